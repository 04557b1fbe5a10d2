"""Go-style durations (``90s``, ``1m30s``, ``500ms``, ``2h``), as Calico configs write them.

Pure parsing only; range checks (e.g. "must not be negative") belong to validation.
"""

from __future__ import annotations

import re

# Seconds per unit, as Go's time.ParseDuration knows them.
_UNITS: dict[str, float] = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


def parse_duration(text: str) -> float:
    """Seconds in ``text``; ValueError naming the text and the accepted form otherwise."""
    if not isinstance(text, str):
        raise ValueError(f"expected a duration string like '90s', got {text!r}")
    s = text.strip()
    sign = 1.0
    if s[:1] in ("+", "-"):
        sign = -1.0 if s[0] == "-" else 1.0
        s = s[1:]
    if s == "0":
        return 0.0
    if not s:
        raise ValueError(f"invalid duration {text!r}: empty (use e.g. '90s', '1m30s', '500ms')")
    total = 0.0
    pos = 0
    while pos < len(s):
        m = _PART.match(s, pos)
        if m is None:
            raise ValueError(
                f"invalid duration {text!r}: expected a number and a unit "
                f"(ns, us, ms, s, m, h) at {s[pos:]!r}, e.g. '90s', '1m30s', '500ms'"
            )
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    return sign * total


def format_duration(seconds: float) -> str:
    """The shortest Go-style text for ``seconds`` that parses back to the same value."""
    if seconds == 0:
        return "0s"
    sign = "-" if seconds < 0 else ""
    rest = abs(seconds)
    if rest < 1:
        ms = rest * 1000
        return f"{sign}{ms:g}ms"
    out = ""
    hours, rest = divmod(rest, 3600)
    minutes, rest = divmod(rest, 60)
    if hours:
        out += f"{int(hours)}h"
    if minutes:
        out += f"{int(minutes)}m"
    if rest or not out:
        out += f"{rest:g}s"
    return sign + out
