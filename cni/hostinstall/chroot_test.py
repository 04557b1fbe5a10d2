"""The installed plugin on a "node" with no Python at all: a chroot holding busybox as
/bin/sh and nothing else, the host's ``/opt/cni`` bind-mounted in, as a kubelet runs it.

Each call enters a fresh private mount namespace (``unshare --mount``), bind-mounts the
installed ``/opt/cni`` (and the service socket, when there is one) into the chroot and
execs ``/opt/cni/bin/tabby`` there; the mounts end with the call. The CNI service is the
real ``tabby-cni-service`` in a node namespace, on real etcd, configuring a pod
namespace the test creates.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import shutil
import subprocess
import tempfile
from collections.abc import Iterator

import pytest

from cni import install, testutil
from cni.hostinstall import elfdeps
from cni.testutil import ip, ns_path
from datastore import keys
from datastore.etcd import EtcdStore
from datastore.etcd_fixture import etcd_server  # noqa: F401 (pytest fixture)
from ipam.testing import put_pool

BUSYBOX = pathlib.Path("/bin/busybox")
SOCKET_IN_CHROOT = "/var/run/tabby/cni.sock"
HOST_TOOLS_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"


def _why_not() -> str | None:
    if os.geteuid() != 0:
        return "needs root (mount namespaces, chroot, network namespaces)"
    if not BUSYBOX.exists() or not shutil.which("unshare") or not shutil.which("chroot"):
        return "needs /bin/busybox (busybox-static), unshare and chroot"
    if elfdeps.needed(BUSYBOX).loader is not None:
        return "/bin/busybox is dynamically linked: install busybox-static"
    return None


pytestmark = pytest.mark.skipif(_why_not() is not None, reason=str(_why_not()))


@contextlib.contextmanager
def scratch_dir() -> Iterator[pathlib.Path]:
    """A temp dir removed as soon as the module is done (a runtime copy is 13-30 MB)."""
    d = tempfile.mkdtemp(prefix="tcnh-")
    try:
        yield pathlib.Path(d)
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def host() -> Iterator[pathlib.Path]:
    """A host root with the plugin installed as the init container installs it."""
    with scratch_dir() as root:
        rc = install.main(
            [
                *("--bin-dir", str(root / "opt/cni/bin")),
                *("--conf-dir", str(root / "etc/cni/net.d")),
                "--host-runtime",
            ]
        )
        assert rc == 0
        yield root


@pytest.fixture(scope="module")
def node_root() -> Iterator[pathlib.Path]:
    """The chroot: busybox as /bin/sh, mount points for /opt/cni and the socket. No Python."""
    with scratch_dir() as root:
        (root / "bin").mkdir()
        shutil.copy(BUSYBOX, root / "bin/sh")
        (root / "opt/cni").mkdir(parents=True)
        (root / "var/run/tabby").mkdir(parents=True)
        (root / SOCKET_IN_CHROOT.lstrip("/")).touch()
        files = sorted(str(p.relative_to(root)) for p in root.rglob("*") if not p.is_dir())
        assert files == ["bin/sh", "var/run/tabby/cni.sock"]
        yield root


def run_in_chroot(
    host: pathlib.Path,
    node_root: pathlib.Path,
    argv: list[str],
    env: dict[str, str],
    stdin: bytes = b"",
    *,
    socket_path: str = "",
    netns: str = "",
) -> subprocess.CompletedProcess[bytes]:
    """Run ``argv`` in the chroot (in ``netns`` if given) with only ``env`` set."""
    setup = (
        'mount --bind "$1" "$2/opt/cni" && '
        '{ [ -z "$3" ] || mount --bind "$3" "$2/var/run/tabby/cni.sock"; } && '
        'shift 3 && exec chroot "$ROOT" "$@"'
    )
    cmd = [
        *(["ip", "netns", "exec", netns] if netns else []),
        *("unshare", "--mount", "--propagation", "private", "--"),
        *("/bin/sh", "-c", setup, "sh", str(host / "opt/cni"), str(node_root), socket_path),
        *argv,
    ]
    return subprocess.run(
        cmd,
        input=stdin,
        env={**env, "ROOT": str(node_root), "PATH": HOST_TOOLS_PATH},
        capture_output=True,
        timeout=60,
    )


def cni_env(command: str, container_id: str = "", netns_path: str = "") -> dict[str, str]:
    return {
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": container_id,
        "CNI_NETNS": netns_path,
        "CNI_IFNAME": "eth0",
        "CNI_ARGS": "",
        "CNI_PATH": "/opt/cni/bin",
    }


def test_the_chroot_has_no_python(host, node_root):
    done = run_in_chroot(host, node_root, ["/bin/sh", "-c", "command -v python3 python"], {})
    assert done.returncode != 0 and done.stdout == b""


def test_version_runs_on_a_node_without_python(host, node_root):
    for exe in ("tabby", "tabby-ipam"):
        done = run_in_chroot(
            host, node_root, [f"/opt/cni/bin/{exe}"], cni_env("VERSION"), b'{"cniVersion":"1.0.0"}'
        )
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout) == {
            "cniVersion": "1.0.0",
            "supportedVersions": ["0.3.1", "0.4.0", "1.0.0", "1.1.0"],
        }
        assert done.stderr == b""


def test_add_without_the_service_is_try_again_later_not_a_traceback(host, node_root):
    conf = {
        "cniVersion": "1.0.0",
        "name": "k8s-pod-network",
        "type": "tabby",
        "cni_service_socket": SOCKET_IN_CHROOT,
        "ipam": {"type": "tabby-ipam"},
    }
    env = cni_env("ADD", "c0ffee", "/var/run/netns/nowhere")
    done = run_in_chroot(host, node_root, ["/opt/cni/bin/tabby"], env, json.dumps(conf).encode())
    assert done.returncode == 11
    out = json.loads(done.stdout)
    assert out["code"] == 11 and out["cniVersion"] == "1.0.0"
    assert SOCKET_IN_CHROOT in out["msg"] and "tabby-node pod" in out["msg"]
    assert b"Traceback" not in done.stderr and done.stderr == b""


def test_undecodable_config_is_answered_by_the_host_runtime(host, node_root):
    """The slow path (json, cni.config) runs on the copied standard library alone."""
    env = cni_env("ADD", "c0ffee", "/var/run/netns/nowhere")
    done = run_in_chroot(host, node_root, ["/opt/cni/bin/tabby"], env, b"{not json")
    assert done.returncode == 6 and json.loads(done.stdout)["code"] == 6
    assert done.stderr == b""
    done = run_in_chroot(host, node_root, ["/opt/cni/bin/tabby"], {"CNI_COMMAND": "ADD"}, b"")
    assert done.returncode == 4 and "CNI_CONTAINERID" in json.loads(done.stdout)["msg"]
    assert done.stderr == b""


# --- with the real service ----------------------------------------------------------


@pytest.fixture(scope="module")
def kv(etcd_server):  # noqa: F811
    store = EtcdStore([etcd_server.endpoint], timeout=5)
    put_pool(store, "pool-host", "10.78.0.0/24", 26)
    yield store
    store.close()


@pytest.fixture
def node(etcd_server, kv, host, tmp_path):  # noqa: F811
    n = testutil.Node(etcd_server.client_port, str(host / "opt/cni/bin"), str(tmp_path))
    try:
        n.start_service()
        yield n
    finally:
        n.close()


def test_add_and_del_through_the_service_from_a_node_without_python(host, node_root, node, kv):
    conf = json.dumps(node.conf(cni_service_socket=SOCKET_IN_CHROOT)).encode()
    with testutil.namespace() as pod:
        env = cni_env("ADD", "host-runtime-1", ns_path(pod))
        done = run_in_chroot(
            host,
            node_root,
            ["/opt/cni/bin/tabby"],
            env,
            conf,
            socket_path=node.socket,
            netns=node.ns,
        )
        assert done.returncode == 0, (done.stdout, done.stderr)
        res = json.loads(done.stdout)
        (ipc,) = res["ips"]
        assert ipc["address"].startswith("10.78.0.")
        host_if = res["interfaces"][0]["name"]
        assert host_if in ip("link", ns=node.ns)
        assert ipc["address"].split("/")[0] in ip("-4", "addr", "show", "eth0", ns=pod)
        pinged = subprocess.run(
            ["ip", "netns", "exec", pod, "ping", "-c", "1", "-W", "2", "169.254.1.1"],
            capture_output=True,
        )
        assert pinged.returncode == 0

        env = cni_env("DEL", "host-runtime-1", ns_path(pod))
        done = run_in_chroot(
            host,
            node_root,
            ["/opt/cni/bin/tabby"],
            env,
            conf,
            socket_path=node.socket,
            netns=node.ns,
        )
        assert done.returncode == 0, (done.stdout, done.stderr)
        assert host_if not in ip("link", ns=node.ns)
        assert "eth0" not in ip("link", ns=pod)
    handles, _ = kv.list(keys.IPAM_HANDLES)
    assert [h.key for h in handles if "host-runtime-1" in h.key] == []
