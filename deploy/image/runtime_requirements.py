"""Picks the image's runtime pip requirements out of the pinned requirements.txt.

One pin per package lives in requirements.txt; the image names only *which* packages
it needs (pip-runtime.txt), so a version bump reaches the image without a second edit
and build tools never do. Pure stdlib: it runs in the Containerfile's build stage and
on the host before pip exists in the debootstrap root.
"""

from __future__ import annotations

import argparse
import pathlib
import re
import sys

_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?\s*==\s*([^\s;#]+)")


class RequirementsError(ValueError):
    """A runtime package is missing from requirements.txt or is not pinned."""


def normalize(name: str) -> str:
    """PEP 503 name normalization: PyYAML, pyyaml and py_yaml are one package."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _lines(text: str) -> list[str]:
    out = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            out.append(line)
    return out


def parse_names(text: str) -> list[str]:
    """Names from pip-runtime.txt: one per line, comments and blanks ignored."""
    return _lines(text)


def select(requirements: str, names: list[str]) -> list[str]:
    """The requirements.txt lines for ``names``, in ``names`` order.

    Raises RequirementsError naming every package that is absent or not pinned with
    ``==``: an unpinned runtime dependency would make two image builds differ.
    """
    pinned: dict[str, str] = {}
    unpinned: set[str] = set()
    for line in _lines(requirements):
        m = _PIN.match(line)
        if m:
            pinned[normalize(m.group(1))] = line
        else:
            unpinned.add(normalize(re.split(r"[\s<>=!~\[;]", line, maxsplit=1)[0]))
    problems = []
    for name in names:
        key = normalize(name)
        if key in pinned:
            continue
        why = "not pinned with ==" if key in unpinned else "missing"
        problems.append(f"{name}: {why} in requirements.txt")
    if problems:
        raise RequirementsError("; ".join(problems))
    return [pinned[normalize(n)] for n in names]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("requirements", type=pathlib.Path, help="the pinned requirements.txt")
    p.add_argument("names", type=pathlib.Path, help="pip-runtime.txt")
    args = p.parse_args(argv)
    try:
        lines = select(args.requirements.read_text(), parse_names(args.names.read_text()))
    except RequirementsError as e:
        print(f"runtime_requirements: {e}", file=sys.stderr)
        return 1
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
