"""ldd output read right: every library the interpreter needs, its loader, clear failures."""

from __future__ import annotations

import os
import pathlib
import sys

import pytest

from cni.hostinstall import elfdeps

DEBIAN_PYTHON = """\
\tlinux-vdso.so.1 (0x00007ffd4a5f2000)
\tlibm.so.6 => /lib/x86_64-linux-gnu/libm.so.6 (0x00007f2a1c0a3000)
\tlibz.so.1 => /lib/x86_64-linux-gnu/libz.so.1 (0x00007f2a1c084000)
\tlibexpat.so.1 => /lib/x86_64-linux-gnu/libexpat.so.1 (0x00007f2a1c059000)
\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f2a1be78000)
\t/lib64/ld-linux-x86-64.so.2 (0x00007f2a1c1a5000)
"""


def test_parse_ldd_finds_libraries_and_loader_and_skips_the_vdso():
    deps = elfdeps.parse_ldd(DEBIAN_PYTHON)
    assert deps.loader == "/lib64/ld-linux-x86-64.so.2"
    assert deps.libs == {
        "libm.so.6": "/lib/x86_64-linux-gnu/libm.so.6",
        "libz.so.1": "/lib/x86_64-linux-gnu/libz.so.1",
        "libexpat.so.1": "/lib/x86_64-linux-gnu/libexpat.so.1",
        "libc.so.6": "/lib/x86_64-linux-gnu/libc.so.6",
    }


def test_missing_library_is_an_error_naming_file_and_library():
    text = DEBIAN_PYTHON + "\tlibssl.so.3 => not found\n"
    with pytest.raises(elfdeps.ElfDepsError, match=r"/usr/bin/x needs libssl\.so\.3"):
        elfdeps.parse_ldd(text, "/usr/bin/x")


def test_static_executable_has_no_loader():
    assert elfdeps.parse_ldd("\tnot a dynamic executable\n") == elfdeps.Deps(None, {})
    assert elfdeps.parse_ldd("\tstatically linked\n") == elfdeps.Deps(None, {})


def test_this_interpreter_needs_libc_and_a_loader_that_exist():
    deps = elfdeps.needed(pathlib.Path(os.path.realpath(sys.executable)))
    assert deps.loader and os.path.exists(deps.loader)
    assert "libc.so.6" in deps.libs and all(os.path.exists(p) for p in deps.libs.values())


def test_ldd_failure_names_the_file(tmp_path):
    with pytest.raises(elfdeps.ElfDepsError, match=r"ldd .*nope"):
        elfdeps.needed(tmp_path / "nope")
