"""``tabby-ipam`` as the IPAM of Debian's reference ``bridge`` plugin (/usr/lib/cni)."""

from __future__ import annotations

import os
import secrets

import pytest

from cni import testutil
from cni.testutil import ip, ns_path
from datastore import keys
from datastore.etcd import EtcdStore
from ipam.testing import put_pool

BRIDGE = "/usr/lib/cni/bridge"

pytest_plugins = ["datastore.etcd_fixture", "cni.testutil"]  # etcd_server, bin_dir
pytestmark = [
    testutil.needs_root,
    pytest.mark.skipif(
        not os.access(BRIDGE, os.X_OK), reason="containernetworking-plugins not installed"
    ),
]


@pytest.fixture
def node(etcd_server, bin_dir, tmp_path):
    kv = EtcdStore([etcd_server.endpoint], timeout=5)
    put_pool(kv, "pool-bridge", "10.76.0.0/24", 26)
    n = testutil.Node(etcd_server.client_port, bin_dir, str(tmp_path))
    try:
        yield n, kv
    finally:
        n.close()
        kv.close()


@pytest.mark.parametrize("with_service", [True, False], ids=["service", "in-process"])
def test_reference_bridge_with_tabby_ipam_gets_and_releases_an_address(node, with_service):
    n, kv = node
    if with_service:
        n.start_service()
    conf = {
        "cniVersion": "1.0.0",
        "name": "tabby-bridge",
        "type": "bridge",
        "bridge": f"tcb{secrets.token_hex(3)}",
        "nodename": n.name,
        "etcd_endpoints": n.etcd_endpoint,
        "cni_service_socket": n.socket,
        "ipam": {"type": "tabby-ipam"},
    }
    c = secrets.token_hex(16)
    cni_path = f"{n.bin_dir}:/usr/lib/cni"
    with testutil.namespace() as pod:
        rc, res, err = n.run(
            "ADD", conf, container_id=c, netns_path=ns_path(pod), exe=BRIDGE, cni_path=cni_path
        )
        if rc != 0:
            raise AssertionError(f"bridge ADD failed: {res} {err}")
        # bridge copies exe path into env; its result carries our allocation.
        (ipc,) = res["ips"]
        assert ipc["address"].startswith("10.76.0.") and ipc["address"].endswith("/32")
        assert ipc["address"] in ip("-4", "addr", "show", "dev", "eth0", ns=pod)
        handle = f"{keys.IPAM_HANDLES}tabby-bridge.{c}"
        assert kv.get(handle) is not None
        rc, _, err = n.run(
            "DEL", conf, container_id=c, netns_path=ns_path(pod), exe=BRIDGE, cni_path=cni_path
        )
        assert rc == 0, err
        assert kv.get(handle) is None
