"""Label selectors as the BGP resolver reads them: ``model.selector`` with one twist.

In a BGPPeer an empty ``nodeSelector``/``peerSelector`` means "not set", so here an
empty selector selects nothing, where ``model.selector.parse`` reads it as ``all()``.
Parsing is cached by ``model.selector``, so evaluating per node stays cheap.
"""

from __future__ import annotations

from collections.abc import Mapping

from model import selector as model_selector

# A selector that does not parse; a ValueError, so callers can catch either.
SelectorError = model_selector.SelectorSyntaxError


def matches(selector: str, labels: Mapping[str, str]) -> bool:
    """True when ``selector`` selects ``labels``. An empty selector selects nothing."""
    if not selector.strip():
        return False
    return model_selector.parse(selector).evaluate(labels)
