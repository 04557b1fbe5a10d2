"""Exit 0 when every ``name==version`` pin in a requirements file is installed."""

import pathlib
import sys
from importlib import metadata


def main(path: str) -> int:
    for line in pathlib.Path(path).read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name, _, version = line.partition("==")
        try:
            if metadata.version(name) != version:
                return 1
        except metadata.PackageNotFoundError:
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
