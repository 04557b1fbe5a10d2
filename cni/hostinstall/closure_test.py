"""The standard-library subset is what a -S -I interpreter really loads for the shim."""

from __future__ import annotations

import os
import pathlib
import sys

import pytest

from cni import install
from cni.hostinstall import closure

STDLIB = pathlib.Path("/usr/lib/python3.11")
LIB = pathlib.Path("/srv/tabby")


def report(*modules: tuple[str, str]) -> dict:
    return {
        "version": "3.11",
        "stdlib": str(STDLIB),
        "landmark": str(STDLIB / "os.py"),
        "modules": [list(m) for m in modules],
    }


def test_classify_splits_stdlib_and_shim_files():
    found = closure.classify(
        report(
            ("encodings", f"{STDLIB}/encodings/__init__.py"),
            ("_json", f"{STDLIB}/lib-dynload/_json.cpython-311-x86_64-linux-gnu.so"),
            ("cni.shim", f"{LIB}/cni/shim.py"),
        ),
        LIB,
    )
    assert found.stdlib == [
        ("encodings/__init__.py", STDLIB / "encodings/__init__.py"),
        (
            "lib-dynload/_json.cpython-311-x86_64-linux-gnu.so",
            STDLIB / "lib-dynload/_json.cpython-311-x86_64-linux-gnu.so",
        ),
    ]
    assert found.app == [("cni/shim.py", LIB / "cni/shim.py")]
    assert found.extensions == [STDLIB / "lib-dynload/_json.cpython-311-x86_64-linux-gnu.so"]


def test_a_pip_package_in_the_shim_is_refused_by_name():
    with pytest.raises(closure.ClosureError, match=r"imports grpc from /usr/local/lib/.*site"):
        closure.classify(
            report(("grpc", "/usr/local/lib/python3.11/site-packages/grpc/__init__.py")), LIB
        )


def test_a_tabby_module_beyond_cni_is_refused():
    with pytest.raises(closure.ClosureError, match=r"beyond cni/: datastore/api\.py"):
        closure.classify(report(("datastore.api", f"{LIB}/datastore/api.py")), LIB)


def test_probe_of_this_interpreter_finds_encodings_json_and_the_shim():
    python = pathlib.Path(os.path.realpath(sys.executable))
    found = closure.probe(python, install.default_lib_dir())
    rels = {rel for rel, _ in found.stdlib}
    assert {"encodings/__init__.py", "encodings/utf_8.py", "json/__init__.py"} <= rels
    assert {rel for rel, _ in found.app} >= {"cni/shim.py", "cni/config.py", "cni/errors.py"}
    assert (
        found.landmark.name == "os.py"
        and found.version == f"{sys.version_info[0]}.{sys.version_info[1]}"
    )
    # Nothing the host could lack: every file is the stdlib's or the shim's own.
    assert all(src.exists() for _, src in found.stdlib + found.app)


def test_probe_reports_an_interpreter_that_cannot_import_the_shim(tmp_path):
    python = pathlib.Path(os.path.realpath(sys.executable))
    with pytest.raises(closure.ClosureError, match="cannot import the shim"):
        closure.probe(python, tmp_path)
