"""IPAM errors. Each ``str()`` is one line an operator can act on.

Datastore failures (``datastore.api.Unavailable`` and friends) are not wrapped: the
CNI plugin maps ``Unavailable`` to CNI error 11 ("try again later") and must see it.
"""

from __future__ import annotations


class IPAMError(Exception):
    """Base of every IPAM failure."""


class PoolExhausted(IPAMError):
    """No address is left in the pools the request may use."""

    def __init__(self, pools: list[str], family: int) -> None:
        self.pools = list(pools)
        self.family = family
        names = ", ".join(self.pools) or "(none)"
        super().__init__(f"no free IPv{family} address in pool(s) {names}")


class NoSuitablePool(IPAMError):
    """No pool may serve this request; the message says why for each candidate."""

    def __init__(self, family: int, reasons: list[str]) -> None:
        self.family = family
        self.reasons = list(reasons)
        why = "; ".join(self.reasons) or "no IP pools configured"
        super().__init__(f"no suitable IPv{family} pool: {why}")


class AddressInUse(IPAMError):
    """A fixed address was requested but another handle (or this one) holds it."""

    def __init__(self, ip: str, handle: str | None) -> None:
        self.ip = ip
        self.handle = handle
        super().__init__(f"address {ip} is already allocated (handle={handle})")


class NotInPool(IPAMError):
    """The address is outside every enabled IP pool."""

    def __init__(self, ip: str) -> None:
        self.ip = ip
        super().__init__(f"address {ip} is not in any enabled IP pool")


class InvalidRequest(IPAMError):
    """The request itself is malformed (empty handle, negative count, bad address)."""


class TooManyConflicts(IPAMError):
    """Compare-and-swap kept losing; the datastore is too contended right now."""

    def __init__(self, key: str, attempts: int) -> None:
        self.key = key
        self.attempts = attempts
        super().__init__(f"gave up on {key} after {attempts} compare-and-swap conflicts")


class CorruptRecord(IPAMError):
    """A stored IPAM record could not be decoded; names the key and the field."""

    def __init__(self, key: str, detail: str) -> None:
        self.key = key
        super().__init__(f"corrupt IPAM record {key}: {detail}")
