"""Install the self-contained runtime the host's ``tabby`` / ``tabby-ipam`` launchers run.

Layout (``<runtime-dir>`` defaults to ``<bin-dir>/../tabby``, i.e. ``/opt/cni/tabby``)::

    <runtime-dir>/rt-<digest>/          one complete runtime, named by its content
        bin/python3.11                  the image's interpreter
        lib/ld-linux-x86-64.so.2, lib/libc.so.6, ...   its loader and libraries (ldd)
        lib/python3.11/...              os.py (prefix landmark), encodings, json, re, ...
        lib/python3.11/lib-dynload/     the extension modules among them (e.g. _json)
        app/cni/{shim,config,errors}.py the shim, byte-compiled
        launch.py                       entry point: the shim without in-process fallback
        MANIFEST.json                   what was copied from where (written last)
    <bin-dir>/tabby, tabby-ipam         /bin/sh launchers naming rt-<digest> relatively

A runtime directory is built under a temporary name, flushed and renamed into place,
then the launchers are replaced atomically: a runtime exec sees the old runtime or
the new one, never a mix. Re-running with the same inputs finds ``rt-<digest>`` and
only rewrites identical launchers. The previous runtime is kept (an exec may still be
starting in it); older ones are removed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import pathlib
import re
import shutil
import subprocess
import tempfile

from cni.hostinstall import atomic, closure, elfdeps

log = logging.getLogger("tabby.cni.install")

LAYOUT_VERSION = 1
EXECUTABLES = ("tabby", "tabby-ipam")
MANIFEST = "MANIFEST.json"

LAUNCH_PY = '''\
"""Run by the tabby / tabby-ipam launchers: argv[1] is the launcher's own path."""
import sys

del sys.argv[0]  # the shim takes its role (plugin or IPAM) from the launcher's name
sys.path.insert(0, __file__.rpartition("/")[0] + "/app")
try:
    from cni.shim import main

    code = main(fallback=False)
except Exception as exc:  # a damaged runtime still answers in the CNI's format
    why = "".join(c if c.isalnum() or c in " .,:_-/()" else " " for c in repr(exc))
    sys.stdout.write(
        '{"cniVersion": "1.1.0", "code": 106, "msg": "the tabby host runtime is broken: '
        + why
        + '; re-run tabby-install-cni"}\\n'
    )
    code = 106
sys.exit(code)
'''

_RUNTIME_REF = re.compile(r"^r=\"\$d/(.+)\"$", re.MULTILINE)


def launcher_text(runtime_rel: str, python_rel: str, loader_rel: str) -> str:
    """The ``/bin/sh`` launcher; ``runtime_rel`` is relative to the launcher's directory.

    A shebang takes one argument, and the runtime needs its loader, a library path and
    interpreter flags, hence a shell. Relative, so the bin and runtime directories may
    be mounted anywhere (``/host/opt/cni/...`` in the init container) as long as they
    stay side by side.
    """
    return (
        "#!/bin/sh\n"
        "# Tabby CNI plugin, written by tabby-install-cni --host-runtime: runs the shim on\n"
        "# its own loader, libraries and Python, so the node needs none of its own.\n"
        "case $0 in */*) d=${0%/*} ;; *) d=. ;; esac\n"
        f'r="$d/{runtime_rel}"\n'
        f'exec "$r/{loader_rel}" --library-path "$r/lib" "$r/{python_rel}" -S -I'
        ' "$r/launch.py" "$0" "$@"\n'
    )


def runtime_of(launcher: str) -> str | None:
    """The runtime directory (relative) an existing launcher names, if it is ours."""
    m = _RUNTIME_REF.search(launcher)
    return m.group(1) if m else None


@dataclasses.dataclass(frozen=True)
class Plan:
    """Every file of one runtime: destination (relative) -> (source, mode)."""

    files: dict[str, tuple[pathlib.Path, int]]
    python_rel: str
    loader_rel: str
    stdlib_rel: str

    def digest(self) -> str:
        """Content address: changes whenever any copied byte, name or mode changes."""
        h = hashlib.sha256(f"layout={LAYOUT_VERSION}\n{LAUNCH_PY}".encode())
        for rel in sorted(self.files):
            src, mode = self.files[rel]
            h.update(f"{rel}\0{mode:o}\0".encode())
            with open(src, "rb") as f:
                while chunk := f.read(1 << 20):
                    h.update(chunk)
        return h.hexdigest()[:16]


def plan(python: pathlib.Path, lib_dir: pathlib.Path) -> Plan:
    """Find everything to copy: the interpreter, its loader and libraries, the modules."""
    python = pathlib.Path(os.path.realpath(python))
    found = closure.probe(python, lib_dir)
    stdlib_rel = f"lib/python{found.version}"
    files: dict[str, tuple[pathlib.Path, int]] = {}
    python_rel = f"bin/{python.name}"
    files[python_rel] = (python, 0o755)
    deps = elfdeps.closure([python, *found.extensions])
    if deps.loader is None:
        raise elfdeps.ElfDepsError(f"{python} names no dynamic loader: cannot relocate it")
    loader_rel = f"lib/{pathlib.PurePath(deps.loader).name}"
    files[loader_rel] = (pathlib.Path(os.path.realpath(deps.loader)), 0o755)
    for soname, path in deps.libs.items():
        files[f"lib/{soname}"] = (pathlib.Path(os.path.realpath(path)), 0o644)
    files[f"{stdlib_rel}/os.py"] = (found.landmark, 0o644)
    for rel, src in found.stdlib:
        files[f"{stdlib_rel}/{rel}"] = (src, 0o755 if rel.endswith(".so") else 0o644)
    for rel, src in found.app:
        files[f"app/{rel}"] = (src, 0o644)
    return Plan(files, python_rel, loader_rel, stdlib_rel)


def _build(p: Plan, staging: pathlib.Path, python: pathlib.Path, digest: str) -> None:
    for rel, (src, mode) in sorted(p.files.items()):
        dst = staging / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
        shutil.copystat(src, dst)  # mtime: the .pyc files below record it
        os.chmod(dst, mode)
    # The prefix landmark for extension modules, even when none is needed.
    (staging / p.stdlib_rel / "lib-dynload").mkdir(parents=True, exist_ok=True)
    (staging / "launch.py").write_text(LAUNCH_PY)
    # Byte-compile with the interpreter that will run them (its magic number).
    done = subprocess.run(
        [str(python), "-I", "-m", "compileall", "-q", str(staging / "app"), str(staging / "lib")],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise OSError(f"compiling the runtime's modules failed: {done.stdout}{done.stderr}")
    manifest = {
        "layout": LAYOUT_VERSION,
        "digest": digest,
        "python": p.python_rel,
        "loader": p.loader_rel,
        "files": {rel: str(src) for rel, (src, _) in sorted(p.files.items())},
    }
    (staging / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    staging.chmod(0o755)
    atomic.fsync_tree(staging)


def _remove(path: pathlib.Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def install(
    bin_dir: pathlib.Path,
    runtime_dir: pathlib.Path,
    lib_dir: pathlib.Path,
    python: pathlib.Path,
) -> list[pathlib.Path]:
    """Put the runtime in place and point the launchers at it; returns the launchers."""
    python = pathlib.Path(os.path.realpath(python))
    p = plan(python, lib_dir)
    digest = p.digest()
    bin_dir.mkdir(parents=True, exist_ok=True)
    runtime_dir.mkdir(parents=True, exist_ok=True)
    current = runtime_dir / f"rt-{digest}"
    if (current / MANIFEST).is_file():
        log.info("host runtime present runtime=%s", current)
    else:
        _remove(current)  # a directory without its manifest is not ours to trust
        staging = pathlib.Path(tempfile.mkdtemp(dir=runtime_dir, prefix=f".rt-{digest}."))
        try:
            _build(p, staging, python, digest)
            os.rename(staging, current)
        except BaseException:
            _remove(staging)
            raise
        atomic.fsync_dir(runtime_dir)
        log.info("host runtime installed runtime=%s files=%d", current, len(p.files))
    keep = {current.name}
    for name in EXECUTABLES:  # the runtime the old launchers name: execs may be starting
        with_old = bin_dir / name
        if with_old.is_file():
            ref = runtime_of(with_old.read_text(errors="replace"))
            if ref:
                keep.add(pathlib.PurePath(ref).name)
    rel = os.path.relpath(current, bin_dir)
    text = launcher_text(rel, p.python_rel, p.loader_rel).encode()
    out = []
    for name in EXECUTABLES:
        atomic.write_file(bin_dir / name, text, 0o755)
        out.append(bin_dir / name)
    for old in runtime_dir.iterdir():
        if old.name.startswith((".rt-", "rt-")) and old.name not in keep:
            log.info("removing old host runtime runtime=%s", old)
            _remove(old)
    return out
