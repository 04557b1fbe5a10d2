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


def modules(lib: pathlib.Path) -> list[str]:
    """Dotted names of the installed modules (tests and pytest fixtures excluded)."""
    names = []
    for path in sorted(lib.rglob("*.py")):
        rel = path.relative_to(lib)
        if path.name == "conftest.py" or path.name.endswith("_test.py"):
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
    failures = []
    for name in modules(lib):
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as e:
            failures.append(f"{name}: needs '{e.name}', which the image does not have")
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
        print(
            "check_imports: add the missing pip packages to deploy/image/pip-runtime.txt",
            file=sys.stderr,
        )
        return 1
    print(f"check_imports: {count} modules import")
    return 0


if __name__ == "__main__":
    sys.exit(main())
