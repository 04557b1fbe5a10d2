"""The image's pip requirements: pinned, runtime-only, and enough for what it ships."""

from __future__ import annotations

import ast
import importlib.metadata
import pathlib
import sys

import pytest

from deploy.image.runtime_requirements import (
    RequirementsError,
    main,
    normalize,
    parse_names,
    select,
)
from scripts.install import PACKAGES, is_shipped

REPO = pathlib.Path(__file__).resolve().parents[2]
HERE = REPO / "deploy" / "image"
BUILD_AND_TEST_TOOLS = {"grpcio-tools", "pytest", "pytest-timeout", "ruff", "bazel-runfiles"}


def runtime_names() -> list[str]:
    return parse_names((HERE / "pip-runtime.txt").read_text())


def test_every_runtime_package_gets_its_pin_from_requirements_txt():
    lines = select((REPO / "requirements.txt").read_text(), runtime_names())
    assert len(lines) == len(runtime_names())
    assert all("==" in line for line in lines)
    assert any(line.startswith("grpcio==") for line in lines)


def test_build_and_test_tools_stay_out_of_the_image():
    assert not {normalize(n) for n in runtime_names()} & BUILD_AND_TEST_TOOLS


def test_names_match_across_case_and_separators():
    assert select("PyYAML==6.0.3\nfoo_bar==1\n", ["pyyaml", "Foo.Bar"]) == [
        "PyYAML==6.0.3",
        "foo_bar==1",
    ]


def test_a_missing_or_unpinned_package_is_named_in_the_error():
    with pytest.raises(RequirementsError) as e:
        select("grpcio>=1.0\n# aetcd==1\n", ["grpcio", "aetcd"])
    assert "grpcio: not pinned with ==" in str(e.value)
    assert "aetcd: missing" in str(e.value)


def test_cli_fails_with_the_name_and_prints_nothing_to_stdout(tmp_path, capsys):
    (tmp_path / "req.txt").write_text("PyYAML==6.0.3\n")
    (tmp_path / "names.txt").write_text("# comment\nPyYAML\nnot-there\n")
    assert main([str(tmp_path / "req.txt"), str(tmp_path / "names.txt")]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert "not-there: missing in requirements.txt" in err


def _third_party_imports() -> dict[str, set[str]]:
    """Top-level modules imported by shipped, non-test code -> files importing them."""
    found: dict[str, set[str]] = {}
    for pkg in PACKAGES:
        for path in (REPO / pkg).rglob("*.py") if (REPO / pkg).is_dir() else []:
            if not is_shipped(path.relative_to(REPO)):
                continue
            if path.name.endswith(("_pb2.py", "_pb2_grpc.py")):
                continue  # generated; the proto package's own imports are grpc/protobuf
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    mods = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    mods = [node.module]
                else:
                    continue
                for mod in mods:
                    top = mod.split(".")[0]
                    if top not in sys.stdlib_module_names and top not in PACKAGES:
                        found.setdefault(top, set()).add(str(path.relative_to(REPO)))
    # Generated stubs import these; keep them covered even before `make proto`.
    found.setdefault("grpc", set()).add("proto/*_pb2_grpc.py")
    found.setdefault("google", set()).add("proto/*_pb2.py")
    return found


def test_every_third_party_import_in_shipped_code_is_a_runtime_requirement():
    # The early warning for what check_imports.py finds at `make image` time.
    dists = importlib.metadata.packages_distributions()
    runtime = {normalize(n) for n in runtime_names()}
    missing = []
    for module, files in sorted(_third_party_imports().items()):
        owners = {normalize(d) for d in dists.get(module, [])}
        if not owners & runtime:
            missing.append(f"{module} (from {', '.join(sorted(files)[:2])})")
    assert not missing, f"add to deploy/image/pip-runtime.txt: {missing}"
