"""Adds up the JUnit XML that ``bazel test`` left in bazel-testlogs into one closing line.

Bazel reports targets; this reports test cases, in the plain form CI reads:
``tests: N passed, N failed, N skipped``.
"""

import pathlib
import re
import sys
import xml.etree.ElementTree as ET

RUN_DIR = re.compile(r"(run|shard)_\d+_of_\d+")


def main() -> int:
    root = pathlib.Path("bazel-testlogs")
    passed = failed = skipped = 0
    for xml in sorted(root.rglob("test.xml")) if root.exists() else []:
        if any(RUN_DIR.fullmatch(part) for part in xml.parts):
            continue  # per-run copies (--runs_per_test), possibly stale from older runs
        try:
            tree = ET.parse(xml)
        except ET.ParseError:
            failed += 1
            continue
        for case in tree.iter("testcase"):
            if case.find("failure") is not None or case.find("error") is not None:
                failed += 1
            elif case.find("skipped") is not None:
                skipped += 1
            else:
                passed += 1
    print(f"tests: {passed} passed, {failed} failed, {skipped} skipped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
