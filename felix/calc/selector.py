"""Label selector evaluation behind one function, so the graph does not care whose.

``model.selector`` (branch ``model``) is the real parser. Until it is importable this
module evaluates the small subset the BGP resolver needs, in Calico's syntax:
``all()``, ``has(k)``, ``!has(k)``, ``k == 'v'``, ``k != 'v'``, ``k in {'a','b'}``,
``k not in {...}``, joined by ``&&`` or ``||`` (``&&`` binds tighter; no parentheses).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping

Predicate = Callable[[Mapping[str, str]], bool]


class SelectorError(ValueError):
    pass


def matches(selector: str, labels: Mapping[str, str]) -> bool:
    """True when ``selector`` selects ``labels``. An empty selector selects nothing."""
    if not selector.strip():
        return False
    return _compile(selector)(labels)


@functools.lru_cache(maxsize=1024)
def _compile(selector: str) -> Predicate:
    try:
        from model import selector as model_selector  # type: ignore[attr-defined]
    except ImportError:
        return _fallback(selector)
    parsed = model_selector.parse(selector)
    return lambda labels: bool(parsed.evaluate(dict(labels)))


_KEY = r"[A-Za-z0-9_./-]+"
_STR = r"""(?:'([^']*)'|"([^"]*)")"""
_TERMS: list[tuple[re.Pattern[str], Callable[[re.Match[str]], Predicate]]] = [
    (re.compile(r"^all\(\s*\)$"), lambda m: lambda labels: True),
    (re.compile(rf"^has\(\s*({_KEY})\s*\)$"), lambda m: lambda labels: m[1] in labels),
    (re.compile(rf"^!\s*has\(\s*({_KEY})\s*\)$"), lambda m: lambda labels: m[1] not in labels),
    (
        re.compile(rf"^({_KEY})\s*==\s*{_STR}$"),
        lambda m: lambda labels: labels.get(m[1]) == (m[2] if m[2] is not None else m[3]),
    ),
    (
        re.compile(rf"^({_KEY})\s*!=\s*{_STR}$"),
        lambda m: lambda labels: labels.get(m[1]) != (m[2] if m[2] is not None else m[3]),
    ),
    (
        re.compile(rf"^({_KEY})\s+(not\s+)?in\s*\{{(.*)\}}$"),
        lambda m: _in_set(m[1], m[3], negate=bool(m[2])),
    ),
]


def _in_set(key: str, body: str, negate: bool) -> Predicate:
    values = {a or b for a, b in re.findall(_STR, body)}

    def pred(labels: Mapping[str, str]) -> bool:
        inside = key in labels and labels[key] in values
        return not inside if negate else inside

    return pred


def _term(text: str) -> Predicate:
    text = text.strip()
    for pattern, build in _TERMS:
        m = pattern.match(text)
        if m:
            return build(m)
    raise SelectorError(f"unsupported selector term {text!r}")


def _fallback(selector: str) -> Predicate:
    alternatives = [[_term(t) for t in alt.split("&&")] for alt in selector.split("||")]
    return lambda labels: any(all(t(labels) for t in alt) for alt in alternatives)
