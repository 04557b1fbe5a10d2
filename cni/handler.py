"""The CNI commands (ADD, DEL, CHECK, STATUS, GC) for ``tabby`` and ``tabby-ipam``.

One entry point, ``handle``, takes what the shim received (environment and stdin) and
returns what the executable prints plus its exit code. The warm service calls it with
long-lived clients (``Backends``); the shim's in-process fallback with fresh ones.
Every failure leaves the node as it was: addresses released, veth and endpoint gone.
"""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import json
import logging
import os
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cni import config, errors, felix_wait, names, netns, plumbing, protocol, workload
from cni import result as cniresult
from cni.config import Invocation, NetConf
from cni.errors import CNIError
from datastore import keys
from datastore.api import DatastoreError, KeyValue, KVStore, Unavailable
from datastore.etcd import EtcdStore
from ipam import errors as ipam_errors
from ipam.block import AllocationBlock
from ipam.blockcache import BlockCache
from ipam.client import AutoAssignRequest, IPAMClient, Snapshot
from model.errors import ValidationError

log = logging.getLogger("tabby.cni")

IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface


class Backends:
    """Datastore and IPAM clients, one per distinct etcd endpoint list, shared by threads."""

    def __init__(self, kv_factory: Callable[[NetConf], KVStore] | None = None) -> None:
        self._kv_factory = kv_factory or (
            lambda c: EtcdStore(list(c.etcd_endpoints), c.etcd_timeout_seconds)
        )
        self._stores: dict[tuple[tuple[str, ...], float], KVStore] = {}
        # One per store: this process's pods share their node's blocks (ipam/blockcache.py).
        self._block_caches: dict[int, BlockCache] = {}
        self._lock = threading.Lock()

    def kv(self, conf: NetConf) -> KVStore:
        key = (conf.etcd_endpoints, conf.etcd_timeout_seconds)
        with self._lock:
            store = self._stores.get(key)
            if store is None:
                try:
                    store = self._kv_factory(conf)
                except ValueError as exc:
                    raise CNIError(
                        errors.INVALID_NETWORK_CONFIG, f"field etcd_endpoints: {exc}"
                    ) from None
                self._stores[key] = store
            return store

    def ipam(self, conf: NetConf) -> IPAMClient:
        kv = self.kv(conf)
        with self._lock:
            cache = self._block_caches.setdefault(id(kv), BlockCache())
        return IPAMClient(kv, block_cache=cache)

    def close(self) -> None:
        with self._lock:
            for store in self._stores.values():
                with contextlib.suppress(Exception):
                    store.close()
            self._stores.clear()
            self._block_caches.clear()


# --- identity of one attachment -----------------------------------------------------


@dataclass(frozen=True)
class Attachment:
    """Everything derived from (network, container, ifname, pod) once, used by every command."""

    orchestrator: str  # "k8s" or "cni"
    namespace: str
    pod: str
    workload: str  # the id Felix knows: "<ns>/<pod>" or the container id
    wep_name: str
    host_ifname: str
    handle: str

    @classmethod
    def of(cls, inv: Invocation, conf: NetConf) -> Attachment:
        pod = inv.pod
        hashed = names.workload_id(inv.container_id, pod)
        if inv.ifname != "eth0":
            hashed = f"{hashed}.{inv.ifname}"  # a second interface needs its own host veth
        wep = names.wep_name(conf.nodename, inv.container_id, pod, inv.ifname)
        return cls(
            orchestrator="k8s" if pod else "cni",
            namespace=pod[0] if pod else workload.DEFAULT_NAMESPACE,
            pod=pod[1] if pod else "",
            workload=f"{pod[0]}/{pod[1]}" if pod else inv.container_id,
            wep_name=wep.lower().replace("_", "-"),
            host_ifname=names.host_veth_name(hashed, conf.interface_prefix),
            handle=names.ipam_handle(conf.name, inv.container_id),
        )


# --- error mapping ------------------------------------------------------------------


def _ipam_error(exc: Exception) -> CNIError:
    if isinstance(exc, ipam_errors.PoolExhausted | ipam_errors.NoSuitablePool):
        return CNIError(errors.POOL_EXHAUSTED, str(exc))
    if isinstance(exc, Unavailable):
        return CNIError(errors.TRY_AGAIN_LATER, "datastore unreachable", str(exc))
    if isinstance(exc, DatastoreError):
        return CNIError(errors.DATASTORE_FAILURE, "datastore refused an IPAM write", str(exc))
    return CNIError(errors.IPAM_FAILURE, f"IPAM failed: {exc}")


def _datastore_error(exc: Exception, what: str) -> CNIError:
    if isinstance(exc, Unavailable):
        return CNIError(errors.TRY_AGAIN_LATER, "datastore unreachable", str(exc))
    return CNIError(errors.DATASTORE_FAILURE, f"{what}: {exc}")


# --- IPAM -----------------------------------------------------------------------------


def _json_list(annotations: dict[str, str], key: str) -> list[str] | None:
    raw = annotations.get(key)
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        value = None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise CNIError(
            errors.INVALID_NETWORK_CONFIG,
            f"pod annotation {key} must be a JSON list of strings",
            f"got {raw!r}",
        )
    return value


def _node_labels(kv: KVStore, node: str) -> dict[str, str]:
    return _labels_of(kv.get(keys.resource_key("nodes", node)))


def _labels_of(found: KeyValue | None) -> dict[str, str]:
    if found is None:
        return {}
    try:
        labels = json.loads(found.value).get("metadata", {}).get("labels", {})
    except (ValueError, AttributeError):
        return {}
    return labels if isinstance(labels, dict) else {}


def _assign(
    conf: NetConf,
    ipam: IPAMClient,
    kv: KVStore,
    att: Attachment,
    inv: Invocation,
    pod_info: workload.PodInfo | None,
    snapshot: Snapshot | None = None,
    node_labels: dict[str, str] | None = None,
) -> tuple[list[ipaddress.IPv4Interface], list[ipaddress.IPv6Interface]]:
    """Addresses for the attachment: fixed ones from ``ipAddrs``, else auto-assigned.

    ``snapshot``/``node_labels``: what ADD already read in its one batched read.
    """
    annotations = pod_info.annotations if pod_info else {}
    attrs = {"node": conf.nodename, "container_id": inv.container_id, "network": conf.name}
    if att.pod:
        attrs.update(namespace=att.namespace, pod=att.pod)
    fixed = _json_list(annotations, workload.ANNOTATION_IP_ADDRS)
    try:
        if fixed is not None:
            v4: list[ipaddress.IPv4Interface] = []
            v6: list[ipaddress.IPv6Interface] = []
            for text in fixed:
                try:
                    addr = ipaddress.ip_address(text)
                except ValueError:
                    raise CNIError(
                        errors.INVALID_NETWORK_CONFIG,
                        f"pod annotation {workload.ANNOTATION_IP_ADDRS}: {text!r} is not an IP",
                    ) from None
                ipam.assign_ip(str(addr), att.handle, conf.nodename, attrs)
                if addr.version == 4:
                    v4.append(ipaddress.IPv4Interface(f"{addr}/32"))
                else:
                    v6.append(ipaddress.IPv6Interface(f"{addr}/128"))
            return v4, v6
        v4_pools = _json_list(annotations, workload.ANNOTATION_IPV4_POOLS)
        v6_pools = _json_list(annotations, workload.ANNOTATION_IPV6_POOLS)
        req = AutoAssignRequest(
            handle=att.handle,
            node=conf.nodename,
            num_ipv4=1 if conf.ipam.assign_ipv4 else 0,
            num_ipv6=1 if conf.ipam.assign_ipv6 else 0,
            ipv4_pools=list(v4_pools if v4_pools is not None else conf.ipam.ipv4_pools),
            ipv6_pools=list(v6_pools if v6_pools is not None else conf.ipam.ipv6_pools),
            attrs=attrs,
            node_labels=node_labels if node_labels is not None else _node_labels(kv, conf.nodename),
        )
        got = ipam.auto_assign(req, snapshot)
    except CNIError:
        _release_quietly(ipam, att.handle)
        raise
    except (ipam_errors.IPAMError, DatastoreError) as exc:
        _release_quietly(ipam, att.handle)
        raise _ipam_error(exc) from None
    v4 = [ipaddress.IPv4Interface(f"{a.ip}/32") for a in got.ipv4]
    v6 = [ipaddress.IPv6Interface(f"{a.ip}/128") for a in got.ipv6]
    if not v4 and not v6:
        raise CNIError(errors.INVALID_NETWORK_CONFIG, "ipam assigns no address family")
    return v4, v6


def _release_quietly(ipam: IPAMClient, handle: str) -> None:
    try:
        ipam.release_by_handle(handle)
    except Exception as exc:  # the caller is already failing; report its error, log this
        log.warning("release after failure failed handle=%s error=%s", handle, exc)


def _delegate_ipam(inv: Invocation, conf: NetConf) -> cniresult.Result:
    """Run another IPAM plugin (e.g. host-local) from CNI_PATH, as the spec chains them."""
    for directory in inv.path:
        exe = os.path.join(directory, conf.ipam.type)
        if os.access(exe, os.X_OK):
            break
    else:
        raise CNIError(
            errors.INVALID_NETWORK_CONFIG,
            f"ipam plugin {conf.ipam.type!r} not found in CNI_PATH",
            ":".join(inv.path),
        )
    env = {
        "CNI_COMMAND": inv.command,
        "CNI_CONTAINERID": inv.container_id,
        "CNI_NETNS": inv.netns,
        "CNI_IFNAME": inv.ifname,
        "CNI_ARGS": ";".join(f"{k}={v}" for k, v in inv.args.items()),
        "CNI_PATH": ":".join(inv.path),
    }
    done = subprocess.run(
        [exe], input=json.dumps(conf.raw).encode(), env=env, capture_output=True, timeout=60
    )
    if done.returncode != 0:
        try:
            err = json.loads(done.stdout)
            raise CNIError(int(err.get("code", errors.IPAM_FAILURE)), str(err.get("msg", "")))
        except (ValueError, AttributeError):
            raise CNIError(
                errors.IPAM_FAILURE, f"ipam plugin {conf.ipam.type} failed", done.stderr.decode()
            ) from None
    if inv.command != "ADD":
        return cniresult.Result()
    return cniresult.parse(json.loads(done.stdout))


# --- the plugin's commands -----------------------------------------------------------


class _Background:
    """Run one step on its own thread (it inherits this thread's namespace)."""

    def __init__(self, fn: Callable[[], object]) -> None:
        self._error: BaseException | None = None
        self.ms = 0.0  # how long the step took, for the command's timing log

        def run() -> None:
            t0 = time.monotonic()
            try:
                fn()
            except BaseException as exc:
                self._error = exc
            finally:
                self.ms = (time.monotonic() - t0) * 1000

        self._thread = threading.Thread(target=run, name="cni-step")
        self._thread.start()

    def wait(self) -> BaseException | None:
        """Join; the step's exception, or None when it succeeded."""
        self._thread.join()
        return self._error


def _read_for_add(
    conf: NetConf, kv: KVStore, ipam: IPAMClient, att: Attachment
) -> tuple[workload.PodInfo | None, Snapshot | None, dict[str, str] | None]:
    """What ADD reads before it writes: (pod metadata, IPAM snapshot, node labels).

    With tabby-ipam it is one round trip (etcd: one read-only transaction): the pod's
    endpoint template, the node's labels, IPAM config, pools, this node's affinities
    and the handle record. A delegated IPAM needs only the template.
    """
    template_key = workload.endpoint_key(att.wep_name, att.namespace)
    snapshot: Snapshot | None = None
    node_labels: dict[str, str] | None = None
    if conf.ipam.type != config.IPAM_TYPE:
        try:
            pod_kv = kv.get(template_key) if att.pod else None
        except DatastoreError as exc:
            raise _datastore_error(exc, "reading the pod's endpoint template") from None
    else:
        node_key = keys.resource_key("nodes", conf.nodename)
        try:
            snapshot, (pod_kv, node_kv) = ipam.snapshot(
                conf.nodename, att.handle, [template_key, node_key]
            )
        except (ipam_errors.IPAMError, DatastoreError) as exc:
            raise _ipam_error(exc) from None
        node_labels = _labels_of(node_kv)
        if not att.pod:
            pod_kv = None  # only a Kubernetes pod has a template
    try:
        return workload.pod_info_from(pod_kv), snapshot, node_labels
    except (ValidationError, ValueError) as exc:
        raise _datastore_error(exc, "reading the pod's endpoint template") from None


def _host_addresses(
    prev: cniresult.Result,
) -> tuple[list[ipaddress.IPv4Interface], list[ipaddress.IPv6Interface]]:
    """A delegated IPAM's addresses as the pod gets them: /32 and /128."""
    addrs = cniresult.addresses_of(prev, None)
    v4 = [ipaddress.IPv4Interface(f"{a.ip}/32") for a in addrs if a.version == 4]
    v6 = [ipaddress.IPv6Interface(f"{a.ip}/128") for a in addrs if a.version == 6]
    return v4, v6


def cmd_add(inv: Invocation, conf: NetConf, backends: Backends) -> dict[str, Any]:
    started = time.monotonic()
    att = Attachment.of(inv, conf)
    kv = backends.kv(conf)
    ipam = backends.ipam(conf)
    mtu = plumbing.resolve_mtu(conf.mtu, conf.mtu_file)
    # The veth pair does not depend on the addresses: build it while IPAM talks to etcd.
    pod_mac = plumbing.random_mac()  # known up front, so the endpoint can be written early
    veth = _Background(
        lambda: plumbing.create_veth(inv.netns, att.host_ifname, inv.ifname, mtu, pod_mac)
    )
    delegated = conf.ipam.type != config.IPAM_TYPE
    try:
        pod_info, snapshot, node_labels = _read_for_add(conf, kv, ipam, att)
        if delegated:
            v4, v6 = _host_addresses(_delegate_ipam(inv, conf))
        else:
            v4, v6 = _assign(conf, ipam, kv, att, inv, pod_info, snapshot, node_labels)
    except BaseException:
        if veth.wait() is None:
            with contextlib.suppress(Exception):
                plumbing.teardown("", att.host_ifname, inv.ifname)
        raise

    def release() -> None:
        if delegated:
            with contextlib.suppress(CNIError, OSError, subprocess.SubprocessError):
                _delegate_ipam(dataclasses.replace(inv, command="DEL"), conf)
        else:
            _release_quietly(ipam, att.handle)

    ipam_ms = (time.monotonic() - started) * 1000
    veth_error = veth.wait()
    if veth_error is not None:
        release()
        if isinstance(veth_error, plumbing.PlumbingError):
            raise CNIError(errors.DATAPLANE_FAILURE, str(veth_error))
        raise veth_error
    # Addresses and routes go in while the endpoint is written: neither needs the other.
    links: list[plumbing.PodLink] = []
    configured = _Background(
        lambda: links.append(
            plumbing.configure(inv.netns, att.host_ifname, inv.ifname, mtu, v4, v6)
        )
    )
    try:
        try:
            wep = workload.build(
                name=att.wep_name,
                namespace=att.namespace,
                node=conf.nodename,
                orchestrator=att.orchestrator,
                workload=att.workload,
                pod=att.pod,
                container_id=inv.container_id,
                endpoint=inv.ifname,
                interface_name=att.host_ifname,
                mac=pod_mac,
                ip_networks=[str(a) for a in [*v4, *v6]],
                network=conf.name,
                pod_info=pod_info,
            )
            t_wep = time.monotonic()
            workload.write(kv, wep)
            wep_ms = (time.monotonic() - t_wep) * 1000
        finally:
            configure_error = configured.wait()
        if configure_error is not None:
            raise configure_error
        if conf.policy_setup_timeout_seconds > 0:
            felix_wait.wait_ready(
                conf.felix_socket,
                att.orchestrator,
                att.workload,
                inv.ifname,
                conf.policy_setup_timeout_seconds,
            )
    except BaseException as exc:
        with contextlib.suppress(Exception):
            if pod_info is not None and pod_info.template:
                workload.restore_template(kv, att.wep_name, att.namespace, pod_info)
            else:
                workload.delete(kv, att.wep_name, att.namespace, inv.container_id)
        with contextlib.suppress(Exception):
            plumbing.teardown(inv.netns, att.host_ifname, inv.ifname)
        release()
        if isinstance(exc, plumbing.PlumbingError):
            raise CNIError(errors.DATAPLANE_FAILURE, str(exc)) from None
        if isinstance(exc, felix_wait.NotReady):
            raise CNIError(errors.POLICY_TIMEOUT, str(exc)) from None
        if isinstance(exc, ValidationError):
            raise CNIError(errors.INVALID_NETWORK_CONFIG, f"workload endpoint: {exc}") from None
        if isinstance(exc, DatastoreError):
            raise _datastore_error(exc, "writing the workload endpoint") from None
        raise
    link = links[0]
    gw6 = link.ipv6_gateway
    out = cniresult.Result(
        interfaces=[
            cniresult.Interface(name=link.host_ifname, mac=link.host_mac),
            cniresult.Interface(name=inv.ifname, mac=link.pod_mac, sandbox=inv.netns, mtu=mtu),
        ],
        ips=[cniresult.IPConfig(a, plumbing.GATEWAY_V4, 1) for a in v4]
        + [cniresult.IPConfig(a, gw6, 1) for a in v6],
        routes=([cniresult.Route("0.0.0.0/0", plumbing.GATEWAY_V4)] if v4 else [])
        + ([cniresult.Route("::/0", gw6)] if v6 else []),
        dns=conf.raw.get("dns") if isinstance(conf.raw.get("dns"), dict) else {},
    )
    log.info(
        "ADD done container=%s workload=%s ifname=%s host_ifname=%s ips=%s ms=%.1f"
        " reads_ipam_ms=%.1f veth_ms=%.1f configure_ms=%.1f wep_ms=%.1f",
        inv.container_id,
        att.workload,
        inv.ifname,
        att.host_ifname,
        ",".join(str(a) for a in [*v4, *v6]),
        (time.monotonic() - started) * 1000,
        ipam_ms,
        veth.ms,
        configured.ms,
        wep_ms,
    )
    return cniresult.render(out, conf.cni_version)


def _get_many(kv: KVStore, wanted: list[str]) -> list[KeyValue | None]:
    """Several gets, in one round trip (and one revision) when the store offers it."""
    read_many = getattr(kv, "read_many", None)
    if read_many is not None:
        return list(read_many(wanted, [])[0])
    return [kv.get(k) for k in wanted]


def cmd_del(inv: Invocation, conf: NetConf, backends: Backends) -> None:
    started = time.monotonic()
    att = Attachment.of(inv, conf)
    kv = backends.kv(conf)
    # The pod end lives in this container's namespace: always safe to remove. Deleting
    # a veth is the slowest step (the kernel waits out RCU), so it runs beside the
    # datastore work.
    pod_side = None
    pod_end_deleted: list[bool] = []
    if inv.netns and netns.exists(inv.netns):
        pod_side = _Background(
            lambda: pod_end_deleted.append(plumbing.teardown(inv.netns, "", inv.ifname))
        )
    ours_ipam = conf.ipam.type == config.IPAM_TYPE
    try:
        # The endpoint and the IPAM handle in one read where the store can batch.
        wanted = [workload.endpoint_key(att.wep_name, att.namespace)]
        if ours_ipam:
            wanted.append(keys.handle_key(att.handle))
        try:
            found = _get_many(kv, wanted)
            current = workload.from_kv(found[0])
        except (DatastoreError, ValidationError, ValueError) as exc:
            raise _datastore_error(exc, "reading the workload endpoint") from None
        owner = current[0].spec.container_id if current else ""
        ours = not owner or owner == inv.container_id
        if ours and current is not None:
            try:
                workload.delete(
                    kv, att.wep_name, att.namespace, inv.container_id, current=current[0]
                )
            except DatastoreError as exc:
                raise _datastore_error(exc, "deleting the workload endpoint") from None
        t_ipam = time.monotonic()
        wep_ms = (t_ipam - started) * 1000
        if ours_ipam:
            try:
                released = backends.ipam(conf).release_by_handle(att.handle, known=found[1])
            except (ipam_errors.IPAMError, DatastoreError) as exc:
                raise _ipam_error(exc) from None
        else:
            _delegate_ipam(inv, conf)
            released = []
        ipam_ms = (time.monotonic() - t_ipam) * 1000
    finally:
        pod_error = pod_side.wait() if pod_side else None
    if isinstance(pod_error, plumbing.PlumbingError):
        raise CNIError(errors.DATAPLANE_FAILURE, str(pod_error))
    if pod_error is not None:
        raise pod_error
    if ours and not any(pod_end_deleted):
        # The host veth is named after the pod: only remove it if it is still ours.
        # (Deleting the pod end above removed its host peer already.)
        try:
            plumbing.teardown("", att.host_ifname, inv.ifname)
        except plumbing.PlumbingError as exc:
            raise CNIError(errors.DATAPLANE_FAILURE, str(exc)) from None
    log.info(
        "DEL done container=%s workload=%s released=%s ms=%.1f"
        " wep_ms=%.1f ipam_ms=%.1f pod_veth_ms=%.1f",
        inv.container_id,
        att.workload,
        ",".join(released) or "-",
        (time.monotonic() - started) * 1000,
        wep_ms,
        ipam_ms,
        pod_side.ms if pod_side else 0.0,
    )


def cmd_check(inv: Invocation, conf: NetConf, backends: Backends) -> None:
    if conf.prev_result is None:
        raise CNIError(errors.INVALID_NETWORK_CONFIG, "field prevResult is required for CHECK")
    prev = cniresult.parse(conf.prev_result)
    att = Attachment.of(inv, conf)
    found = cniresult.sandbox_interface(prev, inv.ifname)
    if found is None:
        raise CNIError(
            errors.CHECK_FAILED, f"prevResult has no sandbox interface named {inv.ifname}"
        )
    index, iface = found
    addrs = list(cniresult.addresses_of(prev, index))
    problems = plumbing.check(inv.netns, att.host_ifname, inv.ifname, addrs, iface.mac)
    kv = backends.kv(conf)
    try:
        if conf.ipam.type == config.IPAM_TYPE:
            held = set(backends.ipam(conf).ips_by_handle(att.handle))
            problems += [
                f"address {a.ip} is not allocated to handle {att.handle}"
                for a in addrs
                if str(a.ip) not in held
            ]
        current = workload.get(kv, att.wep_name, att.namespace)
    except (DatastoreError, ipam_errors.IPAMError, ValidationError, ValueError) as exc:
        raise _datastore_error(exc, "reading IPAM and endpoint state") from None
    if current is None:
        problems.append(f"workload endpoint {att.namespace}/{att.wep_name} is missing")
    else:
        nets = set(current[0].spec.ip_networks)
        problems += [
            f"workload endpoint lacks {a.ip}"
            for a in addrs
            if f"{a.ip}/{a.max_prefixlen}" not in nets
        ]
    if problems:
        raise CNIError(errors.CHECK_FAILED, problems[0], "; ".join(problems))


def cmd_status(inv: Invocation, conf: NetConf, backends: Backends) -> None:
    try:
        backends.kv(conf).get(keys.IPAM_HANDLES)
    except DatastoreError as exc:
        raise CNIError(
            errors.PLUGIN_NOT_AVAILABLE, "the datastore is not reachable", str(exc)
        ) from None


def _gc_handles(conf: NetConf, backends: Backends, valid: set[str]) -> list[str]:
    """IPAM handles of this network on this node whose container is not in ``valid``."""
    prefix = f"{conf.name}."
    stale: set[str] = set()
    blocks, _ = backends.kv(conf).list(keys.IPAM_BLOCKS)
    for item in blocks:
        try:
            block = AllocationBlock.from_json(item.value)
        except ValueError as exc:
            log.warning("GC skips undecodable block key=%s error=%s", item.key, exc)
            continue
        for attr in block.attributes:
            handle = attr.handle_id or ""
            if not handle.startswith(prefix) or attr.secondary.get("node") != conf.nodename:
                continue
            if handle[len(prefix) :] not in valid:
                stale.add(handle)
    ipam = backends.ipam(conf)
    for handle in sorted(stale):
        ipam.release_by_handle(handle)
    return sorted(stale)


def cmd_gc(inv: Invocation, conf: NetConf, backends: Backends, with_weps: bool = True) -> None:
    if conf.valid_attachments is None:
        raise CNIError(
            errors.INVALID_NETWORK_CONFIG, "field cni.dev/valid-attachments is required for GC"
        )
    valid = {cid for cid, _ in conf.valid_attachments}
    kv = backends.kv(conf)
    removed: list[str] = []
    try:
        if with_weps:
            for wep in workload.list_on_node(kv, conf.nodename):
                if wep.metadata.labels.get(workload.LABEL_NETWORK) != conf.name:
                    continue
                if wep.spec.container_id in valid:
                    continue
                if wep.spec.interface_name:
                    plumbing.teardown("", wep.spec.interface_name, wep.spec.endpoint)
                workload.delete(kv, wep.metadata.name, wep.metadata.namespace or "")
                removed.append(f"{wep.metadata.namespace}/{wep.metadata.name}")
        released = _gc_handles(conf, backends, valid)
    except (DatastoreError, ipam_errors.IPAMError) as exc:
        raise _ipam_error(exc) from None
    except plumbing.PlumbingError as exc:
        raise CNIError(errors.DATAPLANE_FAILURE, str(exc)) from None
    log.info(
        "GC done network=%s node=%s valid=%d endpoints_removed=%s handles_released=%s",
        conf.name,
        conf.nodename,
        len(valid),
        ",".join(removed) or "-",
        ",".join(released) or "-",
    )


# --- the IPAM plugin's commands --------------------------------------------------------


def ipam_add(inv: Invocation, conf: NetConf, backends: Backends) -> dict[str, Any]:
    att = Attachment.of(inv, conf)
    v4, v6 = _assign(conf, backends.ipam(conf), backends.kv(conf), att, inv, None)
    out = cniresult.Result(ips=[cniresult.IPConfig(a) for a in [*v4, *v6]])
    log.info("IPAM ADD handle=%s ips=%s", att.handle, ",".join(str(a) for a in [*v4, *v6]))
    return cniresult.render(out, conf.cni_version)


def ipam_del(inv: Invocation, conf: NetConf, backends: Backends) -> None:
    handle = names.ipam_handle(conf.name, inv.container_id)
    try:
        released = backends.ipam(conf).release_by_handle(handle)
    except (ipam_errors.IPAMError, DatastoreError) as exc:
        raise _ipam_error(exc) from None
    log.info("IPAM DEL handle=%s released=%s", handle, ",".join(released) or "-")


def ipam_check(inv: Invocation, conf: NetConf, backends: Backends) -> None:
    handle = names.ipam_handle(conf.name, inv.container_id)
    try:
        held = backends.ipam(conf).ips_by_handle(handle)
    except (ipam_errors.IPAMError, DatastoreError) as exc:
        raise _ipam_error(exc) from None
    if not held:
        raise CNIError(errors.CHECK_FAILED, f"no address is allocated to handle {handle}")


def ipam_gc(inv: Invocation, conf: NetConf, backends: Backends) -> None:
    cmd_gc(inv, conf, backends, with_weps=False)


Command = Callable[[Invocation, NetConf, Backends], "dict[str, Any] | None"]
COMMANDS: dict[tuple[str, str], Command] = {
    (protocol.ROLE_PLUGIN, "ADD"): cmd_add,
    (protocol.ROLE_PLUGIN, "DEL"): cmd_del,
    (protocol.ROLE_PLUGIN, "CHECK"): cmd_check,
    (protocol.ROLE_PLUGIN, "STATUS"): cmd_status,
    (protocol.ROLE_PLUGIN, "GC"): cmd_gc,
    (protocol.ROLE_IPAM, "ADD"): ipam_add,
    (protocol.ROLE_IPAM, "DEL"): ipam_del,
    (protocol.ROLE_IPAM, "CHECK"): ipam_check,
    (protocol.ROLE_IPAM, "STATUS"): cmd_status,
    (protocol.ROLE_IPAM, "GC"): ipam_gc,
}


def handle(req: protocol.Request, backends: Backends) -> protocol.Reply:
    """Run one CNI command; every outcome becomes (exit code, stdout) per the spec."""
    raw: dict[str, Any] | None = None
    try:
        inv = config.parse_invocation(req.env)
        if inv.command == "VERSION":
            return protocol.Reply(0, json.dumps(config.version_result()))
        raw = config.decode_config(req.stdin)
        need_ipam = inv.command in ("ADD", "DEL", "CHECK")
        conf = config.parse_netconf(raw, inv.command, need_ipam=need_ipam)
        out = COMMANDS[(req.role, inv.command)](inv, conf, backends)
        return protocol.Reply(0, json.dumps(out) if out is not None else "")
    except CNIError as err:
        return _failed(req, err, raw)
    except Unavailable as exc:
        unreachable = CNIError(errors.TRY_AGAIN_LATER, "datastore unreachable", str(exc))
        return _failed(req, unreachable, raw)
    except Exception as exc:
        log.exception("unexpected failure role=%s env=%s", req.role, req.env)
        err = CNIError(errors.INTERNAL_ERROR, f"internal error: {type(exc).__name__}: {exc}")
        return protocol.Reply(err.code, json.dumps(err.to_json(_version_of(raw))))


def _failed(req: protocol.Request, err: CNIError, raw: dict[str, Any] | None) -> protocol.Reply:
    """Log the failure for the operator; the reply carries the spec's error JSON."""
    log.warning(
        "command failed role=%s command=%s container=%s code=%d msg=%s details=%s",
        req.role,
        req.env.get("CNI_COMMAND", ""),
        req.env.get("CNI_CONTAINERID", ""),
        err.code,
        err.msg,
        err.details,
    )
    return protocol.Reply(err.code, json.dumps(err.to_json(_version_of(raw))))


def _version_of(raw: dict[str, Any] | None) -> str:
    version = raw.get("cniVersion") if raw else None
    return version if version in config.SUPPORTED_VERSIONS else config.LATEST_VERSION


def handle_once(req: protocol.Request) -> protocol.Reply:
    """The shim's fallback: fresh clients for one request, closed afterwards."""
    _log_to_stderr_if_asked(req.stdin)
    backends = Backends()
    try:
        return handle(req, backends)
    finally:
        backends.close()


def _log_to_stderr_if_asked(stdin: str) -> None:
    try:
        level = json.loads(stdin).get("log_level", "warning")
    except (ValueError, AttributeError):
        level = "warning"
    logging.basicConfig(
        level=getattr(logging, str(level).upper(), logging.WARNING),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
