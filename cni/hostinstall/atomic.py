"""Files and directories that appear whole or not at all.

The container runtime may exec a plugin at any moment, also while the installer
replaces it: everything is written under a temporary name in the same directory,
flushed to disk, then renamed over the old one (rename is atomic within a
filesystem), and the directory is flushed so the rename survives a crash.
"""

from __future__ import annotations

import os
import pathlib
import tempfile


def fsync_dir(path: pathlib.Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_file(path: pathlib.Path, data: bytes, mode: int) -> None:
    """Replace ``path`` with ``data``: temp name, fsync, chmod, rename, fsync the dir."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        pathlib.Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def fsync_tree(root: pathlib.Path) -> None:
    """Flush every file and directory under ``root`` (before it is renamed into place)."""
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(pathlib.Path(dirpath))
