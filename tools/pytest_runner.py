"""Runs one pytest file under Bazel's py_test, so tests read as ordinary pytest."""

import os
import sys

import pytest


def main() -> int:
    files = [a for a in sys.argv[1:] if a.endswith(".py")]
    args = ["-q", "-p", "no:cacheprovider", "-o", "addopts="]
    xml = os.environ.get("XML_OUTPUT_FILE")
    if xml:
        args.append(f"--junitxml={xml}")
    return pytest.main(args + files)


if __name__ == "__main__":
    sys.exit(main())
