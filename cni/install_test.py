"""tabby-install-cni: executables that run, and a conflist shaped like Calico's."""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile

import pytest

from cni import install


def test_install_writes_runnable_executables_and_conflist(tmp_path):
    bin_dir, conf_dir = tmp_path / "bin", tmp_path / "net.d"
    rc = install.main(
        [
            *("--bin-dir", str(bin_dir), "--conf-dir", str(conf_dir)),
            *("--etcd-endpoints", "http://10.0.0.1:2379", "--nodename", "node-1"),
            *("--mtu", "1440"),
        ]
    )
    assert rc == 0
    for name in ("tabby", "tabby-ipam"):
        exe = bin_dir / name
        assert os.access(exe, os.X_OK) and exe.read_text().splitlines()[0].endswith(" -S")
        done = subprocess.run(
            [str(exe)],
            input=b'{"cniVersion": "1.0.0"}',
            env={"CNI_COMMAND": "VERSION"},
            capture_output=True,
        )
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["supportedVersions"] == ["0.3.1", "0.4.0", "1.0.0", "1.1.0"]
    doc = json.loads((conf_dir / "10-tabby.conflist").read_text())
    assert doc["cniVersion"] == "1.0.0" and doc["name"] == "k8s-pod-network"
    tabby, portmap = doc["plugins"]
    assert tabby["type"] == "tabby" and tabby["nodename"] == "node-1" and tabby["mtu"] == 1440
    assert tabby["etcd_endpoints"] == "http://10.0.0.1:2379"
    assert tabby["ipam"] == {"type": "tabby-ipam", "assign_ipv4": "true", "assign_ipv6": "false"}
    assert tabby["policy_setup_timeout_seconds"] == 0 and tabby["log_level"] == "info"
    assert portmap == {"type": "portmap", "snat": True, "capabilities": {"portMappings": True}}


def test_reinstall_replaces_atomically_and_leaves_no_temp_files(tmp_path):
    install.install_binaries(tmp_path)
    install.install_binaries(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tabby", "tabby-ipam"]


def test_install_precompiles_the_shim_so_no_exec_compiles_it(tmp_path):
    import importlib.util
    import shutil

    lib = tmp_path / "lib"  # a copy: the test writes no bytecode into the source tree
    (lib / "cni").mkdir(parents=True)
    for name in install.SHIM_MODULES:
        shutil.copy(install.default_lib_dir() / "cni" / name, lib / "cni" / name)
    written = install.precompile_shim(lib)
    pyc = pathlib.Path(importlib.util.cache_from_source(str(lib / "cni" / "shim.py")))
    assert pyc in written and pyc.exists()
    # A fresh interpreter that may not write bytecode still finds it current.
    code = f"import sys; sys.path.insert(0, {str(lib)!r}); import cni.shim"
    done = subprocess.run(
        [sys.executable, "-S", "-v", "-c", code],
        env={"PYTHONDONTWRITEBYTECODE": "1"},
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert "bytecode is stale for 'cni.shim'" not in done.stderr
    assert f"code object from '{pyc}'" in done.stderr


# --- the DaemonSet's init container ------------------------------------------------------


def test_flags_default_to_the_daemonsets_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("TABBY_ETCD_ENDPOINTS", "http://10.96.232.136:6666")
    monkeypatch.setenv("NODENAME", "kind-worker")
    monkeypatch.setenv("CNI_MTU", "1450")
    conf_dir = tmp_path / "net.d"
    args = ["--bin-dir", str(tmp_path / "bin"), "--conf-dir", str(conf_dir)]
    assert install.main(args) == 0
    (tabby, _) = json.loads((conf_dir / "10-tabby.conflist").read_text())["plugins"]
    assert tabby["etcd_endpoints"] == "http://10.96.232.136:6666"
    assert (tabby["nodename"], tabby["mtu"]) == ("kind-worker", 1450)
    # A flag beats the environment.
    assert install.main([*args, "--etcd-endpoints", "http://10.0.0.9:2379"]) == 0
    (tabby, _) = json.loads((conf_dir / "10-tabby.conflist").read_text())["plugins"]
    assert tabby["etcd_endpoints"] == "http://10.0.0.9:2379"


def test_bad_cni_mtu_is_a_usage_error_naming_the_flag(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CNI_MTU", "jumbo")
    with pytest.raises(SystemExit) as exit_info:
        install.main(["--bin-dir", str(tmp_path / "b"), "--conf-dir", str(tmp_path / "n")])
    assert exit_info.value.code == 2
    assert "--mtu: invalid int value: 'jumbo'" in capsys.readouterr().err


@pytest.fixture
def scratch():
    """A temp dir removed right after the test: each runtime copy is 13-30 MB."""
    d = tempfile.mkdtemp(prefix="tcnh-")
    try:
        yield pathlib.Path(d)
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_host_runtime_goes_beside_the_bin_dir_and_its_launchers_run(scratch):
    bin_dir = scratch / "opt/cni/bin"
    args = ["--bin-dir", str(bin_dir), "--conf-dir", str(scratch / "etc/cni/net.d")]
    assert install.main([*args, "--host-runtime"]) == 0
    (rt,) = (scratch / "opt/cni/tabby").iterdir()
    for name in ("tabby", "tabby-ipam"):
        text = (bin_dir / name).read_text()
        assert text.startswith("#!/bin/sh\n") and f'r="$d/../tabby/{rt.name}"' in text
        done = subprocess.run(
            [str(bin_dir / name)],
            input=b'{"cniVersion": "1.0.0"}',
            env={"CNI_COMMAND": "VERSION"},
            capture_output=True,
        )
        assert done.returncode == 0 and json.loads(done.stdout)["cniVersion"] == "1.0.0"
    assert (scratch / "etc/cni/net.d/10-tabby.conflist").exists()


def test_daemonset_installs_the_host_runtime_beside_the_host_bin_dir():
    """The launchers find the runtime relatively: container and host layouts must agree."""
    import yaml

    manifest = install.default_lib_dir() / "deploy" / "manifests" / "tabby-etcd.yaml"
    (ds,) = [d for d in yaml.safe_load_all(manifest.read_text()) if d and d["kind"] == "DaemonSet"]
    pod = ds["spec"]["template"]["spec"]
    (init,) = pod["initContainers"]
    flags = dict(a.split("=", 1) for a in init["command"][1:])
    mounts = {m["mountPath"]: m["name"] for m in init["volumeMounts"]}
    host_paths = {v["name"]: v["hostPath"]["path"] for v in pod["volumes"]}

    def on_host(container_path: str) -> str:
        return host_paths[mounts[container_path]]

    assert on_host(flags["--bin-dir"]) == "/opt/cni/bin"
    assert on_host(flags["--host-runtime"]) == "/opt/cni/tabby"
    assert os.path.relpath(flags["--host-runtime"], flags["--bin-dir"]) == os.path.relpath(
        "/opt/cni/tabby", "/opt/cni/bin"
    )
