"""Selectors as the BGP resolver evaluates them (model.selector; empty selects nothing)."""

from __future__ import annotations

import pytest

from felix.calc.selector import SelectorError, matches

LABELS = {"rack": "r1", "route-reflector": "true"}


@pytest.mark.parametrize(
    "text,want",
    [
        ("all()", True),
        ("has(route-reflector)", True),
        ("!has(route-reflector)", False),
        ("rack == 'r1'", True),
        ('rack == "r2"', False),
        ("rack != 'r2'", True),
        ("rack in {'r1', 'r3'}", True),
        ("rack not in {'r1'}", False),
        ("has(rack) && rack == 'r2'", False),
        ("rack == 'r2' || has(route-reflector)", True),
        ("", False),
    ],
)
def test_selector_matches(text, want):
    assert matches(text, LABELS) is want


def test_unsupported_selector_raises_a_value_error_naming_the_term():
    with pytest.raises(ValueError, match="bogus"):
        matches("bogus(", LABELS)
    assert issubclass(SelectorError, ValueError)
