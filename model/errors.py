"""The one error type of the resource model.

Operators see these messages in `tabbyctl apply` output and in daemon logs, so every
error names the resource, the dotted field path and a reason, on one line.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from model.resources import Resource


class ValidationError(Exception):
    """A resource (or document) is malformed or semantically invalid.

    ``field`` is a dotted path (``spec.blockSize``, ``metadata.labels.rack``), ``reason``
    a short human sentence, ``resource`` ``Kind(name)`` or ``Kind(namespace/name)`` when
    known. Any of them may be empty when the context is not known yet.
    """

    def __init__(self, field: str, reason: str, resource: str = "") -> None:
        self.field = field
        self.reason = reason
        self.resource = resource
        super().__init__(str(self))

    def __str__(self) -> str:
        return ": ".join(p for p in (self.resource, self.field, self.reason) if p)

    def with_resource(self, resource: str) -> ValidationError:
        """A copy naming ``resource`` (used when the kind/name is learned after the field)."""
        err = ValidationError(self.field, self.reason, resource)
        err.__cause__ = self.__cause__
        return err

    def under(self, prefix: str) -> ValidationError:
        """A copy whose field is nested under ``prefix`` (e.g. ``documents[2]``)."""
        field = f"{prefix}.{self.field}" if self.field else prefix
        err = ValidationError(field, self.reason, self.resource)
        err.__cause__ = self.__cause__
        return err


def describe(kind: str, name: str | None, namespace: str | None = None) -> str:
    """``IPPool(pool-a)`` / ``WorkloadEndpoint(ns/name)``: how errors name a resource."""
    if not kind:
        return ""
    shown = name or "?"
    if namespace:
        shown = f"{namespace}/{shown}"
    return f"{kind}({shown})"


def describe_resource(res: Resource) -> str:
    """``describe`` for a typed resource: ``IPPool(pool-a)``."""
    return describe(res.KIND, res.metadata.name, res.metadata.namespace)
