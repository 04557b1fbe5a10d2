"""Typed resources over the KV store: validated writes, optimistic concurrency, clear errors.

This is what ``tabbyctl`` and the controllers write through. Every write is validated
(defaults filled) and is a compare-and-swap, so an operator's edit made from a stale
read fails with "re-read and retry" instead of silently undoing someone else's change.
The stored value is the resource's JSON document without ``resourceVersion``: that is
the key's etcd ``mod_revision``, filled in on every read.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import uuid
from typing import TypeVar

from datastore import keys
from datastore.api import AlreadyExists, Conflict, DatastoreError, KeyValue, KVStore, NotFound
from model.codec import parse_resource, resource_to_dict
from model.errors import ValidationError
from model.resources import IPPool, Resource
from model.validation import check_pool_overlap, validate

log = logging.getLogger(__name__)

R = TypeVar("R", bound=Resource)

_APPLY_ATTEMPTS = 3


def _shown(kind_cls: type[Resource], name: str, namespace: str | None) -> str:
    """``IPPool "pool-a"`` / ``WorkloadEndpoint "ns/pod-eth0"``: how messages name one."""
    return f'{kind_cls.KIND} "{namespace}/{name}"' if namespace else f'{kind_cls.KIND} "{name}"'


def _now_rfc3339() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def key_for(kind_cls: type[Resource], name: str, namespace: str | None = None) -> str:
    if kind_cls.NAMESPACED and not namespace:
        raise ValidationError(
            "metadata.namespace", f"required for a {kind_cls.KIND}", _shown(kind_cls, name, None)
        )
    return keys.resource_key(kind_cls.PLURAL, name, namespace if kind_cls.NAMESPACED else None)


def encode(res: Resource) -> bytes:
    """The stored document: the resource's JSON, minus the revision the store itself keeps."""
    doc = resource_to_dict(res)
    doc.get("metadata", {}).pop("resourceVersion", None)
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def decode(kv: KeyValue) -> Resource:
    """A stored resource with ``metadata.resource_version`` set from its mod_revision."""
    try:
        res = parse_resource(json.loads(kv.value))
    except (ValueError, ValidationError) as e:
        raise DatastoreError(f"stored value at {kv.key} is unreadable: {e}") from e
    res.metadata.resource_version = str(kv.mod_revision)
    return res


class ResourceStore:
    """create / replace / apply / get / list / delete for ``model.resources`` kinds."""

    def __init__(self, kv: KVStore) -> None:
        self.kv = kv

    # --- reads ---------------------------------------------------------------------

    def get(self, kind_cls: type[R], name: str, namespace: str | None = None) -> R:
        kv = self.kv.get(key_for(kind_cls, name, namespace))
        if kv is None:
            raise NotFound(f"{_shown(kind_cls, name, namespace)} not found")
        return self._decode_as(kind_cls, kv)

    def list(self, kind_cls: type[R], namespace: str | None = None) -> list[R]:
        """Every resource of a kind (in one namespace if given), sorted by namespace and name."""
        prefix = keys.resource_prefix(kind_cls.PLURAL)
        if kind_cls.NAMESPACED and namespace:
            prefix += f"{namespace}/"
        kvs, _ = self.kv.list(prefix)
        return [self._decode_as(kind_cls, kv) for kv in kvs]

    @staticmethod
    def _decode_as(kind_cls: type[R], kv: KeyValue) -> R:
        res = decode(kv)
        if not isinstance(res, kind_cls):
            raise DatastoreError(f"stored value at {kv.key} is a {res.KIND}, not a {kind_cls.KIND}")
        return res

    # --- writes --------------------------------------------------------------------

    def create(self, res: R) -> R:
        """Store a new resource; ``AlreadyExists`` if one of that kind and name exists."""
        out = validate(res)
        shown = _shown(type(out), out.metadata.name, out.metadata.namespace)
        if isinstance(out, IPPool):
            check_pool_overlap(out, self.list(IPPool))
        out.metadata.uid = str(uuid.uuid4())
        out.metadata.creation_timestamp = _now_rfc3339()
        out.metadata.resource_version = ""
        key = key_for(type(out), out.metadata.name, out.metadata.namespace)
        try:
            rev = self.kv.create(key, encode(out))
        except AlreadyExists:
            raise AlreadyExists(f"{shown} already exists") from None
        out.metadata.resource_version = str(rev)
        if isinstance(out, IPPool):
            self._undo_if_overlap_race(out, key, rev)
        log.info("resource created resource=%s revision=%d", shown, rev)
        return out

    def replace(self, res: R) -> R:
        """Overwrite an existing resource, compare-and-swap on its resource version.

        With ``metadata.resource_version`` set, the write only succeeds if the stored
        resource is still at that version; without it, at the version just read. The
        uid and creation timestamp are the stored ones: they are not the caller's to change.
        """
        out = validate(res)
        kind_cls = type(out)
        name, namespace = out.metadata.name, out.metadata.namespace
        shown = _shown(kind_cls, name, namespace)
        key = key_for(kind_cls, name, namespace)
        current_kv = self.kv.get(key)
        if current_kv is None:
            raise NotFound(f"{shown} not found")
        current = self._decode_as(kind_cls, current_kv)
        expected = self._expected_revision(out, current_kv.mod_revision, shown)
        if isinstance(out, IPPool):
            check_pool_overlap(out, self.list(IPPool))
        out.metadata.uid = current.metadata.uid
        out.metadata.creation_timestamp = current.metadata.creation_timestamp
        try:
            rev = self.kv.update(key, encode(out), expected)
        except NotFound:
            raise NotFound(f"{shown} not found") from None
        except Conflict:
            raise self._stale(shown, expected) from None
        out.metadata.resource_version = str(rev)
        log.info("resource replaced resource=%s revision=%d", shown, rev)
        return out

    def apply(self, res: R) -> R:
        """Create, or replace what is there (``kubectl apply``'s promise, without merging)."""
        kind_cls = type(res)
        name, namespace = res.metadata.name, res.metadata.namespace
        for attempt in range(1, _APPLY_ATTEMPTS + 1):
            exists = self.kv.get(key_for(kind_cls, name, namespace)) is not None
            try:
                return self.replace(res) if exists else self.create(res)
            except (AlreadyExists, NotFound):
                # Created or deleted by someone else between our read and write: re-decide.
                if attempt == _APPLY_ATTEMPTS:
                    raise
                log.info(
                    "apply raced attempt=%d resource=%s",
                    attempt,
                    _shown(kind_cls, name, namespace),
                )
        raise AssertionError("unreachable")

    def delete(
        self,
        kind_cls: type[R],
        name: str,
        namespace: str | None = None,
        resource_version: str | None = None,
    ) -> R:
        """Delete and return what was deleted; with ``resource_version``, only if unchanged."""
        shown = _shown(kind_cls, name, namespace)
        key = key_for(kind_cls, name, namespace)
        kv = self.kv.get(key)
        if kv is None:
            raise NotFound(f"{shown} not found")
        current = self._decode_as(kind_cls, kv)
        expected = kv.mod_revision
        if resource_version:
            expected = self._parse_version(resource_version, shown)
        try:
            deleted_at = self.kv.delete(key, expected_revision=expected)
        except NotFound:
            raise NotFound(f"{shown} not found") from None
        except Conflict:
            raise self._stale(shown, expected) from None
        log.info("resource deleted resource=%s revision=%d", shown, deleted_at)
        return current

    # --- helpers -------------------------------------------------------------------

    @staticmethod
    def _stale(shown: str, expected: int) -> Conflict:
        return Conflict(
            f"{shown} was modified concurrently (resource version {expected} is stale); "
            "re-read and retry"
        )

    @classmethod
    def _expected_revision(cls, res: Resource, current: int, shown: str) -> int:
        if not res.metadata.resource_version:
            return current
        return cls._parse_version(res.metadata.resource_version, shown)

    @staticmethod
    def _parse_version(text: str, shown: str) -> int:
        if not text.isdigit():
            raise ValidationError(
                "metadata.resourceVersion", f"must be a revision number, got {text!r}", shown
            )
        return int(text)

    def _undo_if_overlap_race(self, pool: IPPool, key: str, rev: int) -> None:
        """Two overlapping pools created at once both pass the check; the later one loses.

        After our write, any overlapping pool with an earlier create revision wins and
        ours is withdrawn (compare-and-swap, so a newer edit of ours is never deleted).
        """
        kvs, _ = self.kv.list(keys.resource_prefix(IPPool.PLURAL))
        earlier = []
        for kv in kvs:
            if kv.key == key or kv.create_revision >= rev:
                continue
            try:
                other = self._decode_as(IPPool, kv)
            except DatastoreError:
                continue
            earlier.append(other)
        try:
            check_pool_overlap(pool, earlier)
        except ValidationError:
            log.warning("pool overlap race lost pool=%s revision=%d", pool.metadata.name, rev)
            with contextlib.suppress(NotFound, Conflict):
                self.kv.delete(key, expected_revision=rev)
            raise
