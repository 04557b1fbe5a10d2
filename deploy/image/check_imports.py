"""Imports every module of an installed Tabby, to fail the image build, not the node.

A module that imports a pip package the image lacks (one not in pip-runtime.txt)
would otherwise crash on a cluster node at start-up. Run with the image's python3
against the installed library directory (``/usr/local/lib/tabby``).
"""

from __future__ import annotations

import argparse
import importlib
import pathlib
import sys


def is_test_support(path: pathlib.Path) -> bool:
    """Test files and fixtures may import pytest; nothing a node runs imports them."""
    return path.name == "conftest.py" or path.stem.endswith(("_test", "_fixture"))


def modules(lib: pathlib.Path) -> list[str]:
    """Dotted names of the installed modules, test support excluded."""
    names = []
    for path in sorted(lib.rglob("*.py")):
        rel = path.relative_to(lib)
        if is_test_support(path):
            continue
        parts = list(rel.with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        if parts:
            names.append(".".join(parts))
    return names


def check(lib: pathlib.Path) -> list[str]:
    """One line per module that fails to import, naming the missing module if any."""
    sys.path.insert(0, str(lib))
    shipped = {p.name for p in lib.iterdir() if p.is_dir()}
    failures = []
    for name in modules(lib):
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as e:
            missing = e.name or "?"
            if missing.split(".")[0] in shipped:
                why = "a Tabby module missing from the install (branch not merged?)"
            else:
                why = "a package the image lacks (add it to deploy/image/pip-runtime.txt)"
            failures.append(f"{name}: needs '{missing}': {why}")
        except Exception as e:  # report every failure, then fail once
            failures.append(f"{name}: {type(e).__name__}: {e}")
    return failures


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument(
        "lib", type=pathlib.Path, help="installed library dir, e.g. /usr/local/lib/tabby"
    )
    args = p.parse_args(argv)
    count = len(modules(args.lib))
    failures = check(args.lib)
    for line in failures:
        print(f"check_imports: {line}", file=sys.stderr)
    if failures:
        return 1
    print(f"check_imports: {count} modules import")
    return 0


if __name__ == "__main__":
    sys.exit(main())
