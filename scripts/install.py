"""``make install PREFIX=DIR``: copies Tabby's Python packages to DIR/lib/tabby and
writes one launcher per executable to DIR/bin.

Launchers name the interpreter by absolute path (no pyenv shim: it costs ~60 ms a
call). Executables the container runtime calls per pod (``lean=True``) start with
``-S`` so that they import nothing beyond the standard library before doing work.
"""

from __future__ import annotations

import argparse
import fnmatch
import os
import pathlib
import shutil
import sys

REPO = pathlib.Path(__file__).resolve().parent.parent

# Top-level Python packages shipped in the install.
PACKAGES = ["proto", "model", "datastore", "ipam", "ctl", "cni", "felix", "bgp", "node"]

# executable name -> (module with a main() returning an exit code, lean start-up)
ENTRYPOINTS: dict[str, tuple[str, bool]] = {
    "tabbyctl": ("ctl.main", False),
    "tabby-node": ("node.main", False),
    "tabby-felix": ("felix.daemon.main", False),
    "tabby": ("cni.shim", True),
    "tabby-ipam": ("cni.shim", True),
    "tabby-cni-service": ("cni.service", False),
    "tabby-install-cni": ("cni.install", False),
    "tabby-bgpd": ("bgp.daemon.main", False),
}


# Test-only code and build files: never in an install or the image.
NOT_SHIPPED = (
    "*_test.py",
    "*_fixture.py",
    "*_testlib.py",
    "testing.py",
    "testutil.py",
    "conftest.py",
    "interop",
    "__pycache__",
    "BUILD.bazel",
    "testdata",
)


def is_shipped(path: pathlib.Path) -> bool:
    """Whether ``install`` copies this file (judged by its name and its folders')."""
    return not any(fnmatch.fnmatch(part, pat) for part in path.parts for pat in NOT_SHIPPED)


def _launcher(lib: pathlib.Path, module: str, lean: bool) -> str:
    flags = " -S" if lean else ""
    return (
        f"#!{os.path.realpath(sys.executable)}{flags}\n"
        "import sys\n"
        f"sys.path.insert(0, {str(lib)!r})\n"
        f"from {module} import main\n"
        "sys.exit(main())\n"
    )


def install(prefix: pathlib.Path) -> list[pathlib.Path]:
    lib = prefix / "lib" / "tabby"
    bin_dir = prefix / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    if lib.exists():
        shutil.rmtree(lib)
    lib.mkdir(parents=True)
    ignore = shutil.ignore_patterns(*NOT_SHIPPED)
    for pkg in PACKAGES:
        src = REPO / pkg
        if src.is_dir():
            shutil.copytree(src, lib / pkg, ignore=ignore)
    written = []
    for name, (module, lean) in ENTRYPOINTS.items():
        path = bin_dir / name
        path.write_text(_launcher(lib, module, lean))
        path.chmod(0o755)
        written.append(path)
    return written


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--prefix", required=True, type=pathlib.Path)
    args = parser.parse_args()
    for path in install(args.prefix.resolve()):
        print(f"installed {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
