"""Which files of the standard library the shim needs, asked of the interpreter itself.

The interpreter that will be copied starts exactly as the host launcher starts it
(``-S -I``), imports the shim and everything its slow path (VERSION, error replies)
imports, and reports where each loaded module came from. Built-in and frozen modules
need no file; which ones are built in differs between builds (Debian compiles
``_socket`` in, a pyenv build loads it from ``lib-dynload``), hence asking rather
than listing.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import subprocess

# Run by the interpreter being copied; argv[1] is the directory holding the cni package.
PROBE = r"""
import sys
sys.path.insert(0, sys.argv[1])
import encodings.ascii, encodings.latin_1, encodings.utf_8
import json
import cni.shim
from cni import config, errors
json.loads(json.dumps(config.version_result()))
for bad in ({}, {"CNI_COMMAND": "ADD"}):
    try:
        config.parse_invocation(bad)
    except errors.CNIError:
        pass
try:
    config.decode_config("{")
except errors.CNIError:
    pass
modules = []
for name, mod in list(sys.modules.items()):
    spec = getattr(mod, "__spec__", None)
    origin = getattr(spec, "origin", None)
    if isinstance(origin, str) and origin not in ("built-in", "frozen"):
        modules.append([name, origin])
import os
print(json.dumps({
    "version": "%d.%d" % sys.version_info[:2],
    "stdlib": os.path.dirname(os.__file__),
    "landmark": os.__file__,
    "modules": sorted(modules),
}))
"""

SHIM_ROOTS = ("cni.shim", "cni.config", "cni.errors")


class ClosureError(Exception):
    """The shim would need something a bare interpreter cannot give it on the host."""


@dataclasses.dataclass(frozen=True)
class Closure:
    """Files to copy, as (path relative to the stdlib or app root, source path)."""

    version: str  # "3.11": the runtime's lib/pythonX.Y
    landmark: pathlib.Path  # os.py: how the interpreter finds its prefix
    stdlib: list[tuple[str, pathlib.Path]]
    app: list[tuple[str, pathlib.Path]]

    @property
    def extensions(self) -> list[pathlib.Path]:
        return [src for rel, src in self.stdlib if rel.endswith(".so")]


def classify(report: dict, lib_dir: pathlib.Path) -> Closure:
    """Sort the probe's modules into standard-library and shim files (pure)."""
    stdlib_root = pathlib.Path(report["stdlib"])
    stdlib: list[tuple[str, pathlib.Path]] = []
    app: list[tuple[str, pathlib.Path]] = []
    for name, origin in report["modules"]:
        path = pathlib.Path(origin)
        if name == "__main__":
            continue
        if path.is_relative_to(lib_dir):
            app.append((str(path.relative_to(lib_dir)), path))
        elif path.is_relative_to(stdlib_root):
            stdlib.append((str(path.relative_to(stdlib_root)), path))
        else:
            raise ClosureError(
                f"the shim imports {name} from {origin}, outside the standard library"
                f" ({stdlib_root}) and the tabby library ({lib_dir}): the host has neither"
            )
    outside = [rel for rel, _ in app if not rel.startswith("cni/")]
    if outside:
        raise ClosureError(f"the shim imports tabby modules beyond cni/: {', '.join(outside)}")
    return Closure(report["version"], pathlib.Path(report["landmark"]), stdlib, app)


def probe(python: pathlib.Path, lib_dir: pathlib.Path) -> Closure:
    done = subprocess.run(
        [str(python), "-S", "-I", "-c", PROBE, str(lib_dir)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    if done.returncode != 0:
        raise ClosureError(
            f"{python} cannot import the shim from {lib_dir}: {done.stderr.strip()[-500:]}"
        )
    return classify(json.loads(done.stdout), lib_dir)
