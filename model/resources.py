"""The Tabby resource model: what operators write in YAML, as typed values.

Every resource is ``apiVersion: tabby.dev/v1``, ``kind``, ``metadata`` and ``spec``.
Field names follow Calico's v3 API: YAML uses camelCase (``blockSize``), Python uses
the snake_case of the same word (``block_size``); the conversion is mechanical, with
the few acronyms listed in ``model.codec.FIELD_NAME_EXCEPTIONS``.

This module holds only the shapes and their defaults. Parsing, validation and
serialisation live in ``model.codec`` and ``model.validation``; selectors in
``model.selector``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

API_VERSION = "tabby.dev/v1"

# Encapsulation modes of an IP pool (Calico: vxlanMode / ipipMode).
ENCAP_NEVER = "Never"
ENCAP_ALWAYS = "Always"
ENCAP_CROSS_SUBNET = "CrossSubnet"
ENCAP_MODES = (ENCAP_NEVER, ENCAP_ALWAYS, ENCAP_CROSS_SUBNET)


@dataclass
class ObjectMeta:
    name: str
    namespace: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    # Set by the datastore: the etcd mod_revision as a string, a uid and a timestamp.
    resource_version: str = ""
    uid: str = ""
    creation_timestamp: str = ""


@dataclass
class Resource:
    """Base of every kind. ``KIND`` is the YAML kind; ``PLURAL`` names its datastore key."""

    KIND: ClassVar[str] = ""
    PLURAL: ClassVar[str] = ""
    NAMESPACED: ClassVar[bool] = False

    metadata: ObjectMeta

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def namespace(self) -> str | None:
        return self.metadata.namespace


# --- IPPool -------------------------------------------------------------------------


@dataclass
class IPPoolSpec:
    cidr: str
    block_size: int | None = None  # None: 26 for IPv4, 122 for IPv6 (filled by validation)
    vxlan_mode: str = ENCAP_NEVER
    ipip_mode: str = ENCAP_NEVER
    nat_outgoing: bool = False
    disabled: bool = False
    node_selector: str = "all()"
    disable_bgp_export: bool = False


@dataclass
class IPPool(Resource):
    KIND: ClassVar[str] = "IPPool"
    PLURAL: ClassVar[str] = "ippools"
    spec: IPPoolSpec = field(default_factory=lambda: IPPoolSpec(cidr=""))


# --- Node ---------------------------------------------------------------------------


@dataclass
class NodeBGPSpec:
    ipv4_address: str = ""  # with prefix length, e.g. "10.0.1.5/24"
    ipv6_address: str = ""
    as_number: int | None = None  # None: the cluster default from BGPConfiguration
    route_reflector_cluster_id: str = ""  # dotted quad; set: this node is a reflector


@dataclass
class NodeSpec:
    bgp: NodeBGPSpec | None = None
    ipv4_vxlan_tunnel_addr: str = ""
    vxlan_tunnel_mac_addr: str = ""
    ipv4_ipip_tunnel_addr: str = ""


@dataclass
class Node(Resource):
    KIND: ClassVar[str] = "Node"
    PLURAL: ClassVar[str] = "nodes"
    spec: NodeSpec = field(default_factory=NodeSpec)


# --- BGP ----------------------------------------------------------------------------


@dataclass
class BGPConfigurationSpec:
    as_number: int | None = None  # only meaningful on "default"; None there means 64512
    node_to_node_mesh_enabled: bool | None = None  # None: True
    listen_port: int | None = None  # None: 179
    log_severity_screen: str = "Info"
    service_cluster_ips: list[str] = field(default_factory=list)


@dataclass
class BGPConfiguration(Resource):
    KIND: ClassVar[str] = "BGPConfiguration"
    PLURAL: ClassVar[str] = "bgpconfigurations"
    spec: BGPConfigurationSpec = field(default_factory=BGPConfigurationSpec)


@dataclass
class BGPPeerSpec:
    node: str = ""  # empty with empty node_selector: every node (a global peer)
    node_selector: str = ""
    peer_ip: str = ""  # "ip" or "ip:port"; exclusive with peer_selector
    peer_selector: str = ""  # peers with every node it selects (e.g. route reflectors)
    as_number: int | None = None
    password: str = ""  # TCP MD5
    keep_original_next_hop: bool = False
    max_restart_time: str = ""  # duration, e.g. "120s"


@dataclass
class BGPPeer(Resource):
    KIND: ClassVar[str] = "BGPPeer"
    PLURAL: ClassVar[str] = "bgppeers"
    spec: BGPPeerSpec = field(default_factory=BGPPeerSpec)


# --- Felix and IPAM configuration --------------------------------------------------


@dataclass
class FelixConfigurationSpec:
    """``default`` applies to every node, ``node.<name>`` overrides it for one node."""

    log_severity_screen: str = "Info"
    route_refresh_interval: str = "90s"
    device_route_protocol: int = 80  # routes Felix owns carry this rtm_protocol
    interface_prefix: str = "cali"
    vxlan_enabled: bool | None = None  # None: on when any pool uses VXLAN
    vxlan_vni: int = 4096
    vxlan_port: int = 4789
    vxlan_mtu: int = 0  # 0: detect from the uplink
    ipip_enabled: bool | None = None
    ipip_mtu: int = 0
    health_port: int = 9099
    prometheus_metrics_enabled: bool = False
    prometheus_metrics_port: int = 9091


@dataclass
class FelixConfiguration(Resource):
    KIND: ClassVar[str] = "FelixConfiguration"
    PLURAL: ClassVar[str] = "felixconfigurations"
    spec: FelixConfigurationSpec = field(default_factory=FelixConfigurationSpec)


@dataclass
class IPAMConfigurationSpec:
    strict_affinity: bool = False
    auto_allocate_blocks: bool = True
    max_blocks_per_host: int = 0  # 0: unlimited


@dataclass
class IPAMConfiguration(Resource):
    KIND: ClassVar[str] = "IPAMConfiguration"
    PLURAL: ClassVar[str] = "ipamconfigurations"
    spec: IPAMConfigurationSpec = field(default_factory=IPAMConfigurationSpec)


# --- WorkloadEndpoint ---------------------------------------------------------------


@dataclass
class WorkloadEndpointSpec:
    orchestrator: str = "k8s"
    workload: str = ""
    node: str = ""
    container_id: str = ""
    pod: str = ""
    endpoint: str = "eth0"
    interface_name: str = ""  # host side, e.g. "cali1a2b3c4d5e6"
    mac: str = ""
    ip_networks: list[str] = field(default_factory=list)  # "10.65.0.3/32"
    profiles: list[str] = field(default_factory=list)
    service_account_name: str = ""


@dataclass
class WorkloadEndpoint(Resource):
    KIND: ClassVar[str] = "WorkloadEndpoint"
    PLURAL: ClassVar[str] = "workloadendpoints"
    NAMESPACED: ClassVar[bool] = True
    spec: WorkloadEndpointSpec = field(default_factory=WorkloadEndpointSpec)


ALL_KINDS: tuple[type[Resource], ...] = (
    IPPool,
    Node,
    BGPConfiguration,
    BGPPeer,
    FelixConfiguration,
    IPAMConfiguration,
    WorkloadEndpoint,
)
KINDS_BY_NAME: dict[str, type[Resource]] = {k.KIND: k for k in ALL_KINDS}
