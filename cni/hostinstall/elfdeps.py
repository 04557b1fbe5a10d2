"""Which shared libraries (and which dynamic loader) an ELF file needs, as ``ldd`` says.

The host runtime carries its own loader and libraries, so it runs on a node whose
libc is older, newer or absent. ``ldd`` output is parsed by a pure function so the
rules (skip the vDSO, fail on "not found") are tested without a binary.
"""

from __future__ import annotations

import dataclasses
import pathlib
import re
import subprocess

# "\tlibm.so.6 => /lib/x86_64-linux-gnu/libm.so.6 (0x00007f...)"
_MAPPED = re.compile(r"^\s*(\S+)\s+=>\s+(.*?)(?:\s+\(0x[0-9a-f]+\))?\s*$")
# "\t/lib64/ld-linux-x86-64.so.2 (0x00007f...)" or "\tlinux-vdso.so.1 (0x00007f...)"
_BARE = re.compile(r"^\s*(\S+)(?:\s+\(0x[0-9a-f]+\))?\s*$")


class ElfDepsError(Exception):
    """A file's libraries cannot all be found; the message names the file and library."""


@dataclasses.dataclass(frozen=True)
class Deps:
    """``loader``: the dynamic loader's path (None: static); ``libs``: soname -> path."""

    loader: str | None
    libs: dict[str, str]


def parse_ldd(text: str, what: str = "the file") -> Deps:
    """Parse ``ldd`` output. Kernel-provided objects (the vDSO) have no file and are skipped."""
    loader: str | None = None
    libs: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip() or "statically linked" in line or "not a dynamic" in line:
            continue
        mapped = _MAPPED.match(line)
        if mapped:
            name, target = mapped.groups()
            if target == "not found":
                raise ElfDepsError(f"{what} needs {name}, which the dynamic loader cannot find")
            if target.startswith("/"):
                libs[name] = target
            continue  # "name => (0x...)": the vDSO on some architectures
        bare = _BARE.match(line)
        if bare and bare.group(1).startswith("/"):
            loader = bare.group(1)
    return Deps(loader, libs)


def needed(path: pathlib.Path) -> Deps:
    """Run ``ldd`` on ``path`` (ldd ships with glibc's libc-bin, in the image too)."""
    done = subprocess.run(["ldd", str(path)], capture_output=True, text=True, check=False)
    text = done.stdout + done.stderr
    if done.returncode != 0 and "not a dynamic executable" not in text:
        raise ElfDepsError(f"ldd {path} failed: {text.strip()}")
    return parse_ldd(text, str(path))


def closure(paths: list[pathlib.Path]) -> Deps:
    """The loader and the union of libraries every file in ``paths`` needs."""
    loader: str | None = None
    libs: dict[str, str] = {}
    for path in paths:
        deps = needed(path)
        loader = loader or deps.loader
        libs.update(deps.libs)
    return Deps(loader, libs)
