"""The host runtime directory: atomic, content-addressed, idempotent, and it runs."""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import socket
import subprocess
import sys
import tempfile

import pytest

from cni import install, shim
from cni.hostinstall import runtime

PYTHON = pathlib.Path(os.path.realpath(sys.executable))
SHIM_FILES = ("__init__.py", "shim.py", "config.py", "errors.py")


@pytest.fixture
def scratch():
    """A temp dir removed right after the test: each runtime copy is 13-30 MB."""
    d = tempfile.mkdtemp(prefix="tcnh-")
    try:
        yield pathlib.Path(d)
    finally:
        shutil.rmtree(d, ignore_errors=True)


def lib_copy(root: pathlib.Path, marker: str = "") -> pathlib.Path:
    """The shim's package in a directory of its own; ``marker`` changes its content."""
    (root / "cni").mkdir(parents=True)
    for name in SHIM_FILES:
        shutil.copy(install.default_lib_dir() / "cni" / name, root / "cni" / name)
    if marker:
        with open(root / "cni" / "errors.py", "a") as f:
            f.write(f"# {marker}\n")
    return root


def run_version(exe: pathlib.Path) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [str(exe)],
        input=b'{"cniVersion": "0.4.0"}',
        env={"CNI_COMMAND": "VERSION", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        timeout=30,
    )


def runtimes(d: pathlib.Path) -> list[str]:
    return sorted(p.name for p in d.iterdir())


def test_launcher_names_its_runtime_relatively():
    text = runtime.launcher_text("../tabby/rt-0123", "bin/python3.11", "lib/ld.so.2")
    assert text.startswith("#!/bin/sh\n")
    assert runtime.runtime_of(text) == "../tabby/rt-0123"
    assert '"$r/lib/ld.so.2" --library-path "$r/lib" "$r/bin/python3.11" -S -I' in text
    assert runtime.runtime_of("#!/usr/bin/python3 -S\nimport sys\n") is None


def test_installed_plugin_answers_version_from_its_own_runtime(scratch):
    bin_dir = scratch / "opt/cni/bin"
    install.install_binaries(bin_dir, lib_copy(scratch / "lib"), host_runtime=True)
    (rt,) = (scratch / "opt/cni/tabby").iterdir()
    manifest = json.loads((rt / runtime.MANIFEST).read_text())
    assert manifest["python"] == f"bin/{PYTHON.name}"
    assert "lib/libc.so.6" in manifest["files"] and "app/cni/shim.py" in manifest["files"]
    # Precompiled: nothing is compiled per exec, even where the runtime is read-only.
    assert list((rt / "app/cni/__pycache__").glob("shim.*.pyc"))
    for name in ("tabby", "tabby-ipam"):
        done = run_version(bin_dir / name)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout) == {
            "cniVersion": "0.4.0",
            "supportedVersions": ["0.3.1", "0.4.0", "1.0.0", "1.1.0"],
        }
        assert done.stderr == b""


def test_reinstall_is_idempotent(scratch):
    bin_dir, lib = scratch / "opt/cni/bin", lib_copy(scratch / "lib")
    install.install_binaries(bin_dir, lib, host_runtime=True)
    rt_dir = scratch / "opt/cni/tabby"
    (first,) = rt_dir.iterdir()
    inode, text = first.stat().st_ino, (bin_dir / "tabby").read_bytes()
    install.install_binaries(bin_dir, lib, host_runtime=True)
    assert [p.stat().st_ino for p in rt_dir.iterdir()] == [inode]  # not rebuilt
    assert (bin_dir / "tabby").read_bytes() == text
    assert sorted(p.name for p in bin_dir.iterdir()) == ["tabby", "tabby-ipam"]


def test_upgrade_keeps_the_previous_runtime_and_prunes_older_ones(scratch):
    bin_dir, rt_dir = scratch / "opt/cni/bin", scratch / "opt/cni/tabby"
    names = []
    for version in ("v1", "v2", "v3"):
        install.install_binaries(bin_dir, lib_copy(scratch / version, version), host_runtime=True)
        names.append(runtime.runtime_of((bin_dir / "tabby").read_text()).split("/")[-1])
        if version == "v2":
            (rt_dir / ".rt-deadbeef.crashed").mkdir()  # left by a killed install
    assert len(set(names)) == 3
    # v3 is current, v2 may still be starting an exec, v1 and the leftover are gone.
    assert runtimes(rt_dir) == sorted(names[1:])
    assert run_version(bin_dir / "tabby").returncode == 0


def test_failed_build_leaves_old_launchers_working_and_no_partial_runtime(scratch, monkeypatch):
    bin_dir, rt_dir = scratch / "opt/cni/bin", scratch / "opt/cni/tabby"
    install.install_binaries(bin_dir, lib_copy(scratch / "v1"), host_runtime=True)
    before = runtimes(rt_dir), (bin_dir / "tabby").read_bytes()

    def disk_full(p, staging, python, digest):  # type: ignore[no-untyped-def]
        (staging / "bin").mkdir()
        (staging / "bin" / "half").write_bytes(b"\x7fELF")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(runtime, "_build", disk_full)
    with pytest.raises(OSError, match="No space left"):
        install.install_binaries(bin_dir, lib_copy(scratch / "v2", "v2"), host_runtime=True)
    assert (runtimes(rt_dir), (bin_dir / "tabby").read_bytes()) == before
    assert run_version(bin_dir / "tabby").returncode == 0


def test_cli_reports_an_unusable_interpreter_without_a_traceback(tmp_path, capsys):
    rc = install.main(
        [
            *("--bin-dir", str(tmp_path / "bin"), "--conf-dir", str(tmp_path / "net.d")),
            *("--host-runtime", "--python", str(tmp_path / "no-python")),
        ]
    )
    err = capsys.readouterr().err
    assert rc == 1 and "cannot install the plugin" in err and "no-python" in err
    assert "Traceback" not in err
    assert not (tmp_path / "net.d").exists()  # no conflist naming a plugin that is not there


# --- the shim without its in-process fallback ------------------------------------------


def no_fallback_add(sock_path: str) -> shim.Reply:
    conf = {"cniVersion": "1.0.0", "name": "n", "type": "tabby", "cni_service_socket": sock_path}
    env = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c1", "CNI_NETNS": "/x", "CNI_IFNAME": "eth0"}
    return shim.run("plugin", env, json.dumps(conf), fallback=False)


def test_no_service_socket_is_try_again_later_naming_socket_and_pod(tmp_path):
    path = str(tmp_path / "cni.sock")
    reply = no_fallback_add(path)
    out = json.loads(reply.stdout)
    assert reply.exit == 11 and out["code"] == 11 and out["cniVersion"] == "1.0.0"
    assert f"no socket at {path}" in out["msg"] and "tabby-node pod" in out["msg"]


def test_socket_nobody_listens_on_is_try_again_later(tmp_path):
    path = str(tmp_path / "cni.sock")
    with socket.socket(socket.AF_UNIX) as stale:  # bound, never listening: refused
        stale.bind(path)
        reply = no_fallback_add(path)
    out = json.loads(reply.stdout)
    assert reply.exit == 11 and f"nothing listening at {path}" in out["msg"]
