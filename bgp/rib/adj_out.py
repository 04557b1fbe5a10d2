"""Adj-RIB-Out for one peer: what we advertised, what is waiting, grouped for packing.

Changes are staged per prefix (the last one wins, so a flap between flushes costs
nothing on the wire). ``flush`` groups the announcements by identical outgoing
attributes so that the codec can put hundreds of prefixes into one UPDATE.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bgp.wire.types import PathAttributes, Prefix


@dataclass
class Outgoing:
    """One flush: announcements grouped by attribute set, then withdrawals."""

    announce: list[tuple[PathAttributes, list[Prefix]]] = field(default_factory=list)
    withdraw: list[Prefix] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.announce or self.withdraw)

    @property
    def prefix_count(self) -> int:
        return sum(len(p) for _, p in self.announce) + len(self.withdraw)


class AdjRibOut:
    __slots__ = ("pending", "sent")

    def __init__(self) -> None:
        self.sent: dict[Prefix, PathAttributes] = {}
        self.pending: dict[Prefix, PathAttributes | None] = {}

    def __len__(self) -> int:
        return len(self.sent)

    def stage(self, prefix: Prefix, attrs: PathAttributes | None) -> None:
        """Advertise ``attrs`` for ``prefix`` at the next flush (None: withdraw)."""
        self.pending[prefix] = attrs

    def clear(self) -> None:
        """The session went down: the peer forgot everything we sent."""
        self.sent.clear()
        self.pending.clear()

    def flush(self) -> Outgoing:
        out = Outgoing()
        if not self.pending:
            return out
        sent = self.sent
        groups: dict[int, tuple[PathAttributes, list[Prefix]]] = {}
        for prefix, attrs in self.pending.items():
            current = sent.get(prefix)
            if attrs is None:
                if current is not None:
                    del sent[prefix]
                    out.withdraw.append(prefix)
                continue
            if current is attrs or (current is not None and current == attrs):
                continue
            sent[prefix] = attrs
            group = groups.get(id(attrs))
            if group is None:
                groups[id(attrs)] = (attrs, [prefix])
            else:
                group[1].append(prefix)
        self.pending = {}
        # Distinct objects may still be equal attribute sets: merge those groups.
        merged: dict[PathAttributes, list[Prefix]] = {}
        for attrs, prefixes in groups.values():
            merged.setdefault(attrs, []).extend(prefixes)
        out.announce = list(merged.items())
        return out
