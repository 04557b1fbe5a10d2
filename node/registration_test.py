"""A node registering itself against a real etcd keeps what the operator set."""

from __future__ import annotations

import threading

from datastore.etcd import EtcdStore
from datastore.etcd_fixture import EtcdServer
from datastore.resources import ResourceStore
from model.resources import IPPool, Node
from node.registration import ensure_default_pool, register_node

pytest_plugins = ["datastore.etcd_fixture"]


def test_first_start_creates_the_node_with_its_address(etcd_server: EtcdServer):
    store = ResourceStore(EtcdStore([etcd_server.endpoint]))
    node = register_node(store, "reg-a", ipv4="10.0.1.5/24", labels={"rack": "r1"})
    assert node.spec.bgp.ipv4_address == "10.0.1.5/24"
    stored = store.get(Node, "reg-a")
    assert stored.metadata.labels == {"rack": "r1"}


def test_restart_updates_the_address_and_keeps_operator_settings(etcd_server: EtcdServer):
    store = ResourceStore(EtcdStore([etcd_server.endpoint]))
    register_node(store, "reg-b", ipv4="10.0.1.6/24")
    node = store.get(Node, "reg-b")
    node.spec.bgp.as_number = 65010
    node.spec.bgp.route_reflector_cluster_id = "224.0.0.1"
    node.metadata.labels["route-reflector"] = "true"
    store.replace(node)

    again = register_node(store, "reg-b", ipv4="10.0.2.6/24")
    assert again.spec.bgp.ipv4_address == "10.0.2.6/24"
    assert again.spec.bgp.as_number == 65010
    assert again.spec.bgp.route_reflector_cluster_id == "224.0.0.1"
    assert again.metadata.labels["route-reflector"] == "true"


def test_concurrent_registrations_of_one_node_lose_nothing(etcd_server: EtcdServer):
    store = ResourceStore(EtcdStore([etcd_server.endpoint]))
    errors: list[Exception] = []

    def register(i: int) -> None:
        try:
            register_node(store, "reg-c", ipv4=f"10.0.3.{i}/24", labels={f"k{i}": "v"})
        except Exception as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=register, args=(i,)) for i in range(1, 6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    labels = store.get(Node, "reg-c").metadata.labels
    assert set(labels) == {f"k{i}" for i in range(1, 6)}


def test_default_pool_is_created_once_and_only_on_an_empty_cluster(etcd_server: EtcdServer):
    store = ResourceStore(EtcdStore([etcd_server.endpoint]))
    for pool in store.list(IPPool):
        store.delete(IPPool, pool.name)
    assert ensure_default_pool(store, "192.168.0.0/16", "CrossSubnet") is True
    assert ensure_default_pool(store, "10.1.0.0/16") is False
    pools = store.list(IPPool)
    assert [(p.spec.cidr, p.spec.vxlan_mode) for p in pools] == [("192.168.0.0/16", "CrossSubnet")]
