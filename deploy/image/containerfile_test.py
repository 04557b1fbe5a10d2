"""deploy/Containerfile and `make image` build the same image; checked offline.

No Docker engine here, so the Containerfile is checked for what would make the two
builds drift apart: the base, the package list, the pip pins, the entrypoint, and the
paths it copies. build.sh itself is run for real by `make image` / image_test.py.
"""

from __future__ import annotations

import os
import pathlib
import re
import shlex
import shutil
import subprocess

import pytest
import yaml

from scripts.install import ENTRYPOINTS

REPO = pathlib.Path(__file__).resolve().parents[2]
CONTAINERFILE = REPO / "deploy" / "Containerfile"
BUILD_SH = REPO / "deploy" / "image" / "build.sh"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", CONTAINERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def stages() -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for ins in instructions():
        if ins[0] == "FROM":
            result.append([])
        if result:
            result[-1].append(ins)
    return result


def test_both_stages_start_from_debian_bookworm_slim():
    args = dict(a.split("=", 1) for w, a in instructions() if w == "ARG" and "=" in a)
    assert args["DEBIAN"] == "debian:bookworm-slim"
    assert [s[0][1].split()[0] for s in stages()] == ["${DEBIAN}", "${DEBIAN}"]


def test_every_copied_path_exists_in_the_repo():
    for word, arg in instructions():
        if word == "COPY" and not arg.startswith("--from"):
            *sources, _dest = shlex.split(arg)
            for src in sources:
                assert (REPO / src).exists(), f"COPY {src}: no such path in the repo"


def test_the_same_package_list_and_pins_as_make_image():
    text = CONTAINERFILE.read_text()
    build = BUILD_SH.read_text()
    for shared in ("apt-packages.txt", "pip-runtime.txt", "runtime_requirements.py"):
        assert shared in text and shared in build, shared
    assert "scripts/install.py --prefix /usr/local" in text
    assert "--prefix /usr/local" in build
    assert "check_imports.py /usr/local/lib/tabby" in text


def test_the_final_stage_has_no_build_tools():
    final = stages()[-1]
    runs = " ".join(a for w, a in final if w == "RUN")
    assert "python3-pip" not in runs and "grpc_tools" not in runs
    copies = [a for w, a in final if w == "COPY" and a.startswith("--from=build")]
    assert copies == ["--from=build /usr/local /usr/local"]


def test_entrypoint_is_tabby_node_in_both_builds():
    [entry] = [a for w, a in stages()[-1] if w == "ENTRYPOINT"]
    assert entry == '["tabby-node"]'
    assert "--config.entrypoint tabby-node" in BUILD_SH.read_text()
    assert "tabby-node" in ENTRYPOINTS


def test_the_manifests_run_the_image_this_builds():
    build = BUILD_SH.read_text()
    name = re.search(r"^IMAGE_NAME=(\S+)", build, re.M).group(1)
    tag = re.search(r"^TAG=(\S+)", build, re.M).group(1)
    docs = list(yaml.safe_load_all((REPO / "deploy/manifests/tabby-etcd.yaml").read_text()))
    [ds] = [d for d in docs if d and d["kind"] == "DaemonSet"]
    spec = ds["spec"]["template"]["spec"]
    for c in spec["initContainers"] + spec["containers"]:
        assert c["image"] == f"{name}:{tag}", c["name"]
        assert c["command"][0] in ENTRYPOINTS, f"{c['name']}: {c['command'][0]} not installed"


def test_build_script_is_valid_bash():
    subprocess.run(["bash", "-n", str(BUILD_SH)], check=True)


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck not installed")
def test_build_script_passes_shellcheck():
    r = subprocess.run(["shellcheck", str(BUILD_SH)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop to an unprivileged user")
def test_build_refuses_clearly_without_root(tmp_path):
    # Runs nothing that builds: the root check comes first, before any cache or output.
    env = {"PATH": os.environ["PATH"], "TABBY_IMAGE_CACHE": str(tmp_path / "cache")}
    r = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "bash", str(BUILD_SH)],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
    )
    assert r.returncode == 1
    assert "must run as root" in r.stderr
    assert not (tmp_path / "cache").exists()
