"""check_imports fails a build whose installed modules would crash on import."""

from __future__ import annotations

import pathlib
import subprocess
import sys

from deploy.image import check_imports

SCRIPT = pathlib.Path(check_imports.__file__)


def make_lib(root: pathlib.Path, files: dict[str, str]) -> pathlib.Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def run(lib: pathlib.Path) -> subprocess.CompletedProcess[str]:
    # A fresh interpreter, as in the image: no module cache shared with this test.
    return subprocess.run(
        [sys.executable, "-B", str(SCRIPT), str(lib)], capture_output=True, text=True
    )


def test_a_healthy_install_passes_and_counts_its_modules(tmp_path):
    lib = make_lib(
        tmp_path,
        {
            "tbxa/__init__.py": "",
            "tbxa/core.py": "import json\n",
            "tbxa/sub/__init__.py": "from tbxa import core\n",
        },
    )
    r = run(lib)
    assert r.returncode == 0, r.stderr
    assert "3 modules import" in r.stdout


def test_a_missing_pip_package_names_module_package_and_fix(tmp_path):
    lib = make_lib(
        tmp_path,
        {"tbxb/__init__.py": "", "tbxb/watch.py": "import aetcd_not_installed_xyz\n"},
    )
    r = run(lib)
    assert r.returncode == 1
    assert "tbxb.watch: needs 'aetcd_not_installed_xyz'" in r.stderr
    assert "deploy/image/pip-runtime.txt" in r.stderr


def test_a_missing_tabby_module_is_reported_as_such(tmp_path):
    lib = make_lib(
        tmp_path,
        {"tbxc/__init__.py": "", "tbxc/main.py": "from tbxc.config import load\n"},
    )
    r = run(lib)
    assert r.returncode == 1
    assert "tbxc.main" in r.stderr
    assert "Tabby module missing from the install" in r.stderr


def test_an_error_at_import_time_fails_too(tmp_path):
    lib = make_lib(tmp_path, {"tbxd/__init__.py": "raise RuntimeError('boom')\n"})
    r = run(lib)
    assert r.returncode == 1
    assert "tbxd: RuntimeError: boom" in r.stderr


def test_tests_and_fixtures_are_not_imported(tmp_path):
    lib = make_lib(
        tmp_path,
        {
            "tbxe/__init__.py": "",
            "tbxe/etcd_fixture.py": "import pytest_not_in_image\n",
            "tbxe/x_test.py": "import pytest_not_in_image\n",
            "tbxe/conftest.py": "import pytest_not_in_image\n",
        },
    )
    assert check_imports.modules(lib) == ["tbxe"]
    assert run(lib).returncode == 0
