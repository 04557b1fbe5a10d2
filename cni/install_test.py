"""tabby-install-cni: executables that run, and a conflist shaped like Calico's."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

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
