"""Block IPAM with node affinity over a ``KVStore``, every write a compare-and-swap.

Pods get addresses from blocks affine to their node (few writes, and Felix/BGP route
one block per node instead of one /32 per pod). The write order makes a crash at any
point safe:

* assign: handle count up first, then the block. A crash in between leaves a handle
  count with no address behind it (``ipam check`` reports it); never an address that
  no handle knows, never the same address twice (the block CAS decides).
* release: block first, then the handle count down. A crash in between leaves a
  handle count too high: harmless, and ``release_by_handle`` still clears it.
* claim: affinity ``pending``, then create the block (the create is the arbiter
  between nodes), then affinity ``confirmed``. A pending affinity found later is
  finished or dropped.

On an ambiguous failure (``Unavailable``: the write may or may not have landed) no
count is taken back, so the handle never under-counts. ``Unavailable`` propagates
unchanged for the CNI plugin to map to "try again".
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from datastore.api import AlreadyExists, Conflict, KeyValue, KVStore, NotFound
from datastore.keys import (
    IPAM_AFFINITIES,
    IPAM_BLOCKS,
    affinity_key,
    block_key,
    cidr_from_key,
    handle_key,
    resource_key,
    resource_prefix,
)
from ipam.block import AllocationBlock, IPAddress, IPNetwork, host_affinity
from ipam.blockcache import BlockCache
from ipam.errors import (
    AddressInUse,
    CorruptRecord,
    InvalidRequest,
    IPAMError,
    NotInPool,
    PoolExhausted,
    TooManyConflicts,
)
from ipam.pools import Pool, next_free_block, pool_for_ip, pool_from_resource, select_pools

log = logging.getLogger("tabby.ipam")

AFFINITY_CONFIRMED = "confirmed"
AFFINITY_PENDING = "pending"
AFFINITY_PENDING_DELETION = "pendingDeletion"


@dataclass
class AutoAssignRequest:
    handle: str
    node: str
    num_ipv4: int = 1
    num_ipv6: int = 0
    ipv4_pools: list[str] = field(default_factory=list)
    ipv6_pools: list[str] = field(default_factory=list)
    attrs: dict[str, str] = field(default_factory=dict)
    node_labels: dict[str, str] = field(default_factory=dict)


@dataclass
class AutoAssignResult:
    ipv4: list[ipaddress.IPv4Interface] = field(default_factory=list)
    ipv6: list[ipaddress.IPv6Interface] = field(default_factory=list)


@dataclass(frozen=True)
class IPAMConfig:
    """The ``default`` IPAMConfiguration; absent means Calico's defaults."""

    strict_affinity: bool = False
    auto_allocate_blocks: bool = True
    max_blocks_per_host: int = 0


IPAM_CONFIG_KEY = resource_key("ipamconfigurations", "default")


@dataclass
class Snapshot:
    """What an assignment reads before it writes, taken in one read where the store can.

    Built per request, never kept: the writes that follow are compare-and-swaps, so
    nothing here can make them overwrite a newer state.
    """

    config: IPAMConfig
    pools: list[Pool]
    affinities: dict[int, list[KeyValue]]  # this node's affinity records per IP version
    handles: dict[str, KeyValue | None] = field(default_factory=dict)  # as read, or written


class _NoHint:
    """Marker: nothing is known about a handle record; read it."""


NO_HINT = _NoHint()


def _encode(d: dict) -> bytes:
    return json.dumps(d, separators=(",", ":"), sort_keys=True).encode()


class IPAMClient:
    """Allocates and frees pod addresses. Thread-safe: all state lives in the store."""

    def __init__(
        self,
        kv: KVStore,
        *,
        max_attempts: int = 32,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        block_cache: BlockCache | None = None,
    ) -> None:
        """``block_cache``: shared by the clients of one long-lived process (the CNI
        service) so their writes to one block queue up instead of colliding; see
        ``ipam/blockcache.py``. Without it every block is read from the store."""
        self.kv = kv
        self._cache = block_cache
        self.max_attempts = max_attempts
        self._sleep = sleep
        self._rng = rng or random.Random()

    # ================================================================ public API

    def snapshot(
        self, node: str, handle: str = "", extra_gets: list[str] | None = None
    ) -> tuple[Snapshot, list[KeyValue | None]]:
        """Config, pools, ``node``'s affinities (and ``handle``, ``extra_gets``) in one read.

        One round trip when the store offers ``read_many`` (etcd: a read-only
        transaction, so all of it is from one revision); otherwise one call each.
        Returns the snapshot and the values of ``extra_gets`` in order.
        """
        gets = [IPAM_CONFIG_KEY, *([handle_key(handle)] if handle else []), *(extra_gets or [])]
        lists = [resource_prefix("ippools")] + [f"{IPAM_AFFINITIES}{node}/ipv{v}/" for v in (4, 6)]
        read_many = getattr(self.kv, "read_many", None)
        if read_many is not None:
            got, listed, _ = read_many(gets, lists)
        else:
            got = [self.kv.get(k) for k in gets]
            listed = [self.kv.list(prefix)[0] for prefix in lists]
        snap = Snapshot(
            config=self._config_from(got[0]),
            pools=self._pools_from(listed[0]),
            affinities={4: listed[1], 6: listed[2]},
            handles={handle: got[1]} if handle else {},
        )
        return snap, got[1 + bool(handle) :]

    def auto_assign(
        self, req: AutoAssignRequest, snapshot: Snapshot | None = None
    ) -> AutoAssignResult:
        """Assign ``num_ipv4`` + ``num_ipv6`` addresses to ``req.handle`` on ``req.node``.

        All or nothing: if one family cannot be served, what this call took is given
        back before the error is raised. ``snapshot``: reads already made for this
        request (``snapshot(req.node, req.handle)``), so they are not repeated.
        """
        if not req.handle:
            raise InvalidRequest("auto_assign: field handle is empty")
        if not req.node:
            raise InvalidRequest("auto_assign: field node is empty")
        if req.num_ipv4 < 0 or req.num_ipv6 < 0:
            raise InvalidRequest("auto_assign: num_ipv4/num_ipv6 must not be negative")
        t0 = time.monotonic()
        snap = snapshot or Snapshot(self.config(), self.pools(), {})
        got: list[tuple[IPAddress, int]] = []
        try:
            for version, n, requested in (
                (4, req.num_ipv4, req.ipv4_pools),
                (6, req.num_ipv6, req.ipv6_pools),
            ):
                if n:
                    got += self._assign_family(version, n, requested, req, snap)
        except BaseException:
            self._rollback(req.handle, [ip for ip, _ in got])
            raise
        result = AutoAssignResult(
            ipv4=[ipaddress.IPv4Interface(f"{ip}/{p}") for ip, p in got if ip.version == 4],
            ipv6=[ipaddress.IPv6Interface(f"{ip}/{p}") for ip, p in got if ip.version == 6],
        )
        log.info(
            "ipam assigned handle=%s node=%s ipv4=%s ipv6=%s ms=%.1f",
            req.handle,
            req.node,
            ",".join(str(i) for i in result.ipv4) or "-",
            ",".join(str(i) for i in result.ipv6) or "-",
            (time.monotonic() - t0) * 1000,
        )
        return result

    def assign_ip(
        self, ip: str, handle: str, node: str, attrs: dict[str, str] | None = None
    ) -> None:
        """Assign one fixed address (e.g. from a pod annotation) to ``handle``.

        ``NotInPool`` outside every enabled pool, ``AddressInUse`` if anybody holds it.
        An unclaimed block is claimed for ``node`` first; a block affine to another
        node is borrowed from unless strict affinity forbids it.
        """
        if not handle:
            raise InvalidRequest("assign_ip: field handle is empty")
        addr = _parse_ip(ip)
        pool = pool_for_ip(self.pools(), addr)
        if pool is None:
            raise NotInPool(str(addr))
        cidr = pool.block_for(addr)
        bkey = block_key(str(cidr))
        cfg = self.config()
        if self.kv.get(bkey) is None:
            self._claim(node, cidr, cfg)
        blk, _ = self._read_block(bkey) or (None, 0)
        if blk is None:
            raise IPAMError(f"block {cidr} for {addr} vanished while assigning; retry")
        if blk.affinity != host_affinity(node) and (cfg.strict_affinity or blk.strict_affinity):
            raise IPAMError(
                f"address {addr} is in block {cidr} of {blk.affinity}; "
                f"strict affinity forbids assigning it on node {node}"
            )
        holder = blk.holder(addr)
        if holder is not None:
            raise AddressInUse(str(addr), holder.handle_id)
        self._handle_add(handle, str(cidr), 1)
        done = False
        try:
            for attempt in range(self.max_attempts):
                cur = self._read_block(bkey)
                if cur is None:
                    raise IPAMError(f"block {cidr} for {addr} vanished while assigning; retry")
                blk, rev = cur
                blk.assign(addr, handle, attrs)
                try:
                    self.kv.update(bkey, blk.to_json(), rev)
                    done = True
                    break
                except (Conflict, NotFound):
                    self._backoff(attempt)
            else:
                raise TooManyConflicts(bkey, self.max_attempts)
        except (AddressInUse, IPAMError):
            if not done:
                self._handle_add(handle, str(cidr), -1)
            raise
        log.info("ipam assigned fixed ip=%s handle=%s node=%s", addr, handle, node)

    def release_ips(self, ips: list[str]) -> list[str]:
        """Free these addresses; returns the ones that were not allocated."""
        addrs = [_parse_ip(ip) for ip in ips]
        not_allocated: list[str] = []
        by_block: dict[IPNetwork, list[IPAddress]] = {}
        for version in sorted({a.version for a in addrs}):
            blocks = self._block_cidrs(version)
            for a in addrs:
                if a.version != version:
                    continue
                home = next((b for b in blocks if a in b), None)
                if home is None:
                    not_allocated.append(str(a))
                else:
                    by_block.setdefault(home, []).append(a)
        for cidr, block_ips in by_block.items():
            missed, _ = self._release_in_block(cidr, block_ips, handle=None)
            not_allocated += [str(a) for a in missed]
        missed = set(not_allocated)
        result = [str(a) for a in addrs if str(a) in missed]  # in the caller's order
        if ips:
            log.info(
                "ipam released ips=%s not_allocated=%s", ",".join(ips), ",".join(result) or "-"
            )
        return result

    def release_by_handle(
        self, handle: str, known: KeyValue | _NoHint | None = NO_HINT
    ) -> list[str]:
        """Free every address of ``handle``; unknown handle: nothing to do, ``[]``.

        ``known``: the handle record (None: absent) from a linearizable read the caller
        just made, so it is not read again.
        """
        kvh = self.kv.get(handle_key(handle)) if isinstance(known, _NoHint) else known
        if kvh is None:
            return []
        counts = self._decode_handle(kvh)
        released: list[str] = []
        for cidr in sorted(counts):
            _, ips = self._release_in_block(ipaddress.ip_network(cidr), None, handle=handle)
            released += [str(ip) for ip in ips]
        # Whatever the counts said, nothing of this handle is left in those blocks.
        self._handle_drop(handle, set(counts), kvh)
        log.info("ipam released handle=%s ips=%s", handle, ",".join(released) or "-")
        return released

    def ips_by_handle(self, handle: str) -> list[str]:
        kvh = self.kv.get(handle_key(handle))
        if kvh is None:
            return []
        out: list[str] = []
        for cidr in sorted(self._decode_handle(kvh)):
            cur = self._read_block(block_key(cidr))
            if cur is not None:
                out += [str(ip) for ip in cur[0].ips_for_handle(handle)]
        return out

    def release_node_affinities(self, node: str) -> list[str]:
        """Free the empty blocks of a node that is gone; returns their CIDRs.

        Blocks still holding addresses keep their affinity (and show in ``ipam check``)
        until those addresses are released and this runs again.
        """
        kvs, _ = self.kv.list(f"{IPAM_AFFINITIES}{node}/")
        freed: list[str] = []
        for akv in kvs:
            cidr = cidr_from_key(akv.key)
            if self._release_affinity(node, cidr, akv):
                freed.append(cidr)
        log.info("ipam released affinities node=%s blocks=%s", node, ",".join(freed) or "-")
        return freed

    # ============================================================ configuration

    def config(self) -> IPAMConfig:
        return self._config_from(self.kv.get(IPAM_CONFIG_KEY))

    @staticmethod
    def _config_from(kvc: KeyValue | None) -> IPAMConfig:
        if kvc is None:
            return IPAMConfig()
        try:
            spec = json.loads(kvc.value).get("spec") or {}
            return IPAMConfig(
                strict_affinity=bool(spec.get("strictAffinity", False)),
                auto_allocate_blocks=bool(spec.get("autoAllocateBlocks", True)),
                max_blocks_per_host=int(spec.get("maxBlocksPerHost", 0) or 0),
            )
        except (ValueError, AttributeError, TypeError) as e:
            raise CorruptRecord(IPAM_CONFIG_KEY, str(e)) from None

    def pools(self) -> list[Pool]:
        """Every IPPool in the store; an undecodable one is skipped with a warning."""
        return self._pools_from(self.kv.list(resource_prefix("ippools"))[0])

    @staticmethod
    def _pools_from(kvs: list[KeyValue]) -> list[Pool]:
        out = []
        for kvp in kvs:
            try:
                out.append(pool_from_resource(kvp.value))
            except (ValueError, AttributeError, TypeError, KeyError) as e:
                log.warning("ipam skipping bad pool key=%s err=%s", kvp.key, e)
        return out

    # ================================================================ assignment

    def _assign_family(
        self,
        version: int,
        n: int,
        requested: list[str],
        req: AutoAssignRequest,
        snap: Snapshot,
    ) -> list[tuple[IPAddress, int]]:
        cfg = snap.config
        pools = select_pools(snap.pools, version, req.node_labels, requested)
        got: list[tuple[IPAddress, int]] = []

        def take(cidr: IPNetwork, borrow: bool) -> None:
            ips = self._assign_in_block(cidr, n - len(got), req, snap, borrow=borrow)
            got.extend((ip, cidr.prefixlen) for ip in ips)

        try:
            # 1. Blocks this node already owns.
            known_affinities = snap.affinities.get(version)
            for cidr in self._affine_blocks(req.node, version, pools, cfg, known_affinities):
                take(cidr, borrow=False)
                if len(got) == n:
                    return got
            # 2. Claim fresh blocks while the pools have some.
            while len(got) < n and cfg.auto_allocate_blocks:
                cidr = self._claim_new_block(req.node, version, pools, cfg)
                if cidr is None:
                    break
                take(cidr, borrow=False)
            # 3. Borrow single addresses from other nodes' blocks.
            if len(got) < n and not cfg.strict_affinity:
                for cidr in self._block_cidrs(version):
                    if not any(cidr.subnet_of(p.cidr) for p in pools):  # type: ignore[arg-type]
                        continue
                    take(cidr, borrow=True)
                    if len(got) == n:
                        break
            if len(got) < n:
                raise PoolExhausted([f"{p.name} ({p.cidr})" for p in pools], version)
        except BaseException:
            self._rollback(req.handle, [ip for ip, _ in got])
            raise
        return got

    def _assign_in_block(
        self, cidr: IPNetwork, n: int, req: AutoAssignRequest, snap: Snapshot, *, borrow: bool
    ) -> list[IPAddress]:
        """Take up to ``n`` addresses from one block (handle first, then block)."""
        bkey = block_key(str(cidr))
        mine = host_affinity(req.node)
        if n <= 0:
            return []

        def usable(c: tuple[AllocationBlock, int] | None) -> bool:
            if c is None or c[0].free == 0:
                return False
            if c[0].affinity != mine:
                return borrow and not c[0].strict_affinity
            return True

        cur = self._read_block_for_write(bkey, usable)
        if not usable(cur):
            return []
        assert cur is not None
        want = min(n, cur[0].free)
        self._handle_add(req.handle, str(cidr), want, snap.handles)
        got: list[IPAddress] = []
        with self._block_lock(bkey):
            if self._cache is not None:  # others in this process may have written meanwhile
                cur = self._read_block_for_write(bkey, usable)
            for attempt in range(self.max_attempts):
                if cur is None:
                    break
                blk, rev = cur
                ips = blk.allocate(want, req.handle, req.attrs)
                if not ips:
                    break
                try:
                    self._write_block(bkey, blk, rev)
                    got = ips
                    break
                except (Conflict, NotFound):
                    log.debug("ipam block conflict key=%s attempt=%d", bkey, attempt)
                    self._backoff(attempt)
                    cur = self._read_block(bkey)
                    if cur is not None and not borrow and cur[0].affinity != mine:
                        cur = None
            else:
                self._handle_add(req.handle, str(cidr), -want, snap.handles)
                raise TooManyConflicts(bkey, self.max_attempts)
        if len(got) < want:
            self._handle_add(req.handle, str(cidr), len(got) - want, snap.handles)
        if borrow and got:
            log.info("ipam borrowed block=%s owner=%s ips=%d", cidr, blk.affinity, len(got))
        return got

    def _rollback(self, handle: str, ips: list[IPAddress]) -> None:
        """Give back what a failed request took; never masks the original error."""
        if not ips:
            return
        try:
            self.release_ips([str(ip) for ip in ips])
            log.info("ipam rolled back handle=%s ips=%d", handle, len(ips))
        except Exception as e:  # the original error matters more
            log.warning(
                "ipam rollback failed handle=%s ips=%s err=%s",
                handle,
                ",".join(str(ip) for ip in ips),
                e,
            )

    # ================================================================ affinity

    def _affine_blocks(
        self,
        node: str,
        version: int,
        pools: list[Pool],
        cfg: IPAMConfig,
        kvs: list[KeyValue] | None = None,
    ) -> list[IPNetwork]:
        """This node's blocks inside ``pools``, in pool order; finishes pending claims.

        ``kvs``: the node's affinity records for ``version`` if already read.
        """
        if kvs is None:
            kvs, _ = self.kv.list(f"{IPAM_AFFINITIES}{node}/ipv{version}/")
        ranked: list[tuple[int, IPNetwork]] = []
        for akv in kvs:
            cidr = ipaddress.ip_network(cidr_from_key(akv.key))
            rank = next(
                (i for i, p in enumerate(pools) if cidr.subnet_of(p.cidr)),  # type: ignore[arg-type]
                None,
            )
            if rank is None:
                continue
            state = self._affinity_state(akv)
            if state == AFFINITY_PENDING_DELETION:
                continue
            if state == AFFINITY_PENDING and not self._claim(node, cidr, cfg):
                continue
            ranked.append((rank, cidr))
        return [c for _, c in sorted(ranked, key=lambda rc: (rc[0], int(rc[1].network_address)))]

    def _claim_new_block(
        self, node: str, version: int, pools: list[Pool], cfg: IPAMConfig
    ) -> IPNetwork | None:
        """Claim the lowest free block of the first pool that has one."""
        if cfg.max_blocks_per_host:
            mine, _ = self.kv.list(f"{IPAM_AFFINITIES}{node}/ipv{version}/")
            if len(mine) >= cfg.max_blocks_per_host:
                log.info("ipam max blocks per host reached node=%s", node)
                return None
        taken = set(self._block_cidrs(version))
        for pool in pools:
            while (cand := next_free_block(pool, taken)) is not None:
                if self._claim(node, cand, cfg):
                    return cand
                taken.add(cand)
        return None

    def _claim(self, node: str, cidr: IPNetwork, cfg: IPAMConfig) -> bool:
        """Make ``cidr`` this node's block; False if another node owns it."""
        akey = affinity_key(node, str(cidr))
        bkey = block_key(str(cidr))
        mine = host_affinity(node)
        # AlreadyExists: our own earlier (crashed or concurrent) claim; carry it on.
        with contextlib.suppress(AlreadyExists):
            self.kv.create(akey, _encode({"state": AFFINITY_PENDING}))
        try:
            self.kv.create(bkey, AllocationBlock.new(cidr, mine, cfg.strict_affinity).to_json())
            log.info("ipam claimed block=%s node=%s", cidr, node)
        except AlreadyExists:
            cur = self._read_block(bkey)
            if cur is None or cur[0].affinity != mine:
                self._delete_quietly(akey)
                return False
        self._set_affinity_state(akey, AFFINITY_CONFIRMED)
        return True

    def _release_affinity(self, node: str, cidr: str, akv: KeyValue) -> bool:
        """Drop one affinity of ``node`` and its block if empty; False if not empty."""
        bkey = block_key(cidr)
        mine = host_affinity(node)
        marked = False
        for attempt in range(self.max_attempts):
            cur = self._read_block(bkey)
            if cur is None or cur[0].affinity != mine:
                break  # no block of ours: only the affinity record is left
            blk, rev = cur
            if not blk.is_empty():
                if marked:  # someone allocated meanwhile: the node keeps its block
                    self._set_affinity_state(akv.key, AFFINITY_CONFIRMED)
                log.info("ipam block not empty, keeping affinity block=%s node=%s", cidr, node)
                return False
            if not marked:
                self._set_affinity_state(akv.key, AFFINITY_PENDING_DELETION)
                marked = True
            try:
                self.kv.delete(bkey, rev)
                break
            except (Conflict, NotFound):
                self._backoff(attempt)
        else:
            raise TooManyConflicts(bkey, self.max_attempts)
        self._delete_quietly(akv.key)
        return True

    def _affinity_state(self, akv: KeyValue) -> str:
        try:
            return str(json.loads(akv.value).get("state", AFFINITY_CONFIRMED))
        except (ValueError, AttributeError) as e:
            raise CorruptRecord(akv.key, f"field state: {e}") from None

    def _set_affinity_state(self, akey: str, state: str) -> None:
        for attempt in range(self.max_attempts):
            cur = self.kv.get(akey)
            try:
                if cur is None:
                    self.kv.create(akey, _encode({"state": state}))
                elif self._affinity_state(cur) != state:
                    self.kv.update(akey, _encode({"state": state}), cur.mod_revision)
                return
            except (Conflict, AlreadyExists, NotFound):
                self._backoff(attempt)
        raise TooManyConflicts(akey, self.max_attempts)

    # ================================================================ release

    def _release_in_block(
        self, cidr: IPNetwork, ips: list[IPAddress] | None, *, handle: str | None
    ) -> tuple[list[IPAddress], list[IPAddress]]:
        """Free ``ips`` (or all of ``handle``'s) in one block: block first, then handles.

        Returns (not allocated, released).
        """
        bkey = block_key(str(cidr))

        def has_work(c: tuple[AllocationBlock, int] | None) -> bool:
            if c is None:
                return False
            held = c[0].ips_for_handle(handle or "") if ips is None else ips
            try:
                return any(c[0].holder(ip) is not None for ip in held)
            except (ValueError, IndexError):  # not this block's address: let the store decide
                return False

        with self._block_lock(bkey):
            cur = self._read_block_for_write(bkey, has_work)
            for attempt in range(self.max_attempts):
                if cur is None:
                    return list(ips or []), []
                blk, rev = cur
                targets = ips if ips is not None else blk.ips_for_handle(handle or "")
                missed, per_handle = blk.release(targets)
                missed_set = set(missed)
                released = [ip for ip in targets if ip not in missed_set]
                if not released:
                    return missed, []
                try:
                    self._write_block(bkey, blk, rev)
                    break
                except (Conflict, NotFound):
                    self._backoff(attempt)
                    cur = self._read_block(bkey)
            else:
                raise TooManyConflicts(bkey, self.max_attempts)
        if handle is None:  # release_by_handle fixes its own handle record afterwards
            for h, count in per_handle.items():
                self._handle_add(h, str(cidr), -count)
        return missed, released

    # ================================================================ handles

    def _decode_handle(self, kvh: KeyValue) -> dict[str, int]:
        try:
            counts = json.loads(kvh.value)["block"]
            return {str(c): int(v) for c, v in counts.items()}
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise CorruptRecord(kvh.key, f"field block: {e}") from None

    def _handle_add(
        self,
        handle: str,
        cidr: str,
        delta: int,
        known: dict[str, KeyValue | None] | None = None,
    ) -> None:
        """Add ``delta`` to the handle's count for one block; drop it at zero.

        ``known``: the handle record as this request last read or wrote it (a
        snapshot's ``handles``). The first attempt trusts it instead of reading; the
        write is a compare-and-swap either way, so a stale record only costs a retry.
        It is kept up to date with what this call writes.
        """
        if delta == 0:
            return
        key = handle_key(handle)
        hint: KeyValue | _NoHint | None = NO_HINT
        if known is not None and handle in known:
            hint = known.pop(handle)  # trusted once; re-recorded below on success
        for attempt in range(self.max_attempts):
            cur = self.kv.get(key) if isinstance(hint, _NoHint) else hint
            hint = NO_HINT
            try:
                if cur is None:
                    if delta > 0:
                        body = _encode({"handleID": handle, "block": {cidr: delta}})
                        rev = self.kv.create(key, body)
                        if known is not None:
                            known[handle] = KeyValue(key, body, rev, rev)
                    return
                counts = self._decode_handle(cur)
                counts[cidr] = counts.get(cidr, 0) + delta
                if counts[cidr] <= 0:
                    del counts[cidr]
                if counts:
                    body = _encode({"handleID": handle, "block": counts})
                    rev = self.kv.update(key, body, cur.mod_revision)
                    if known is not None:
                        known[handle] = KeyValue(key, body, rev, cur.create_revision)
                else:
                    self.kv.delete(key, cur.mod_revision)
                    if known is not None:
                        known[handle] = None
                return
            except (Conflict, AlreadyExists, NotFound):
                self._backoff(attempt)
        raise TooManyConflicts(key, self.max_attempts)

    def _handle_drop(self, handle: str, cidrs: set[str], known: KeyValue | None = None) -> None:
        """Forget ``cidrs`` in the handle record; delete it when nothing is left.

        ``known``: the record as last read; the first attempt's compare-and-swap trusts it.
        """
        key = handle_key(handle)
        for attempt in range(self.max_attempts):
            cur = known if known is not None else self.kv.get(key)
            known = None  # trusted once: a retry reads the store
            if cur is None:
                return
            counts = {c: v for c, v in self._decode_handle(cur).items() if c not in cidrs}
            try:
                if counts:
                    body = _encode({"handleID": handle, "block": counts})
                    self.kv.update(key, body, cur.mod_revision)
                else:
                    self.kv.delete(key, cur.mod_revision)
                return
            except (Conflict, NotFound):
                self._backoff(attempt)
        raise TooManyConflicts(key, self.max_attempts)

    # ================================================================ helpers

    def _read_block(self, bkey: str) -> tuple[AllocationBlock, int] | None:
        """The block from the store (remembered in the block cache, if any)."""
        kvb = self.kv.get(bkey)
        if kvb is None:
            if self._cache is not None:
                self._cache.forget(bkey)
            return None
        try:
            blk = AllocationBlock.from_json(kvb.value)
        except ValueError as e:
            raise CorruptRecord(bkey, str(e)) from None
        if self._cache is not None:
            self._cache.put(bkey, kvb.value, kvb.mod_revision)
        return blk, kvb.mod_revision

    def _read_block_for_write(
        self, bkey: str, useful: Callable[[tuple[AllocationBlock, int] | None], bool]
    ) -> tuple[AllocationBlock, int] | None:
        """The block to base a compare-and-swap on: the remembered copy if it is
        ``useful`` (a stale one fails the CAS, and the caller re-reads), else the
        store's. A conclusion not to write is never drawn from a remembered copy."""
        if self._cache is not None:
            entry = self._cache.get(bkey)
            if entry is not None:
                try:
                    cached = (AllocationBlock.from_json(entry[0]), entry[1])
                except ValueError:
                    cached = None
                if useful(cached):
                    return cached
        return self._read_block(bkey)

    def _write_block(self, bkey: str, blk: AllocationBlock, rev: int) -> None:
        """CAS ``blk`` over revision ``rev``; the cache follows what the store holds."""
        body = blk.to_json()
        try:
            new_rev = self.kv.update(bkey, body, rev)
        except (Conflict, NotFound):
            if self._cache is not None:
                self._cache.forget(bkey)
            raise
        if self._cache is not None:
            self._cache.put(bkey, body, new_rev)

    def _block_lock(self, bkey: str) -> contextlib.AbstractContextManager[None]:
        return self._cache.locked(bkey) if self._cache is not None else contextlib.nullcontext()

    def _block_cidrs(self, version: int) -> list[IPNetwork]:
        """Every existing block of a family, lowest first (keys only are used)."""
        kvs, _ = self.kv.list(f"{IPAM_BLOCKS}ipv{version}/")
        nets = [ipaddress.ip_network(cidr_from_key(k.key)) for k in kvs]
        return sorted(nets, key=lambda n: int(n.network_address))

    def _delete_quietly(self, key: str) -> None:
        with contextlib.suppress(NotFound):
            self.kv.delete(key)

    def _backoff(self, attempt: int) -> None:
        """Jittered exponential backoff so contending writers spread out."""
        self._sleep(self._rng.uniform(0, min(0.05, 0.0005 * (2**attempt))))


def _parse_ip(ip: str) -> IPAddress:
    try:
        return ipaddress.ip_address(ip.split("/", 1)[0].strip())
    except ValueError:
        raise InvalidRequest(f"not an IP address: {ip!r}") from None
