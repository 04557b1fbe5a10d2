"""Go-style durations as Calico configs write them (maxRestartTime, routeRefreshInterval)."""

from __future__ import annotations

import pytest

from model.durations import format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90.0),
        ("1m30s", 90.0),
        ("500ms", 0.5),
        ("2h", 7200.0),
        ("1h2m3s", 3723.0),
        ("1.5h", 5400.0),
        ("250us", 0.00025),
        ("100ns", 1e-7),
        ("0", 0.0),
        ("0s", 0.0),
        ("-3s", -3.0),
        (" 10s ", 10.0),
    ],
)
def test_parse_go_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "90", "s", "1d", "1 m", "1m30", "ten seconds", "1.2.3s"])
def test_rejects_non_durations_with_the_text_and_an_example(text: str) -> None:
    with pytest.raises(ValueError) as exc:
        parse_duration(text)
    assert repr(text) in str(exc.value)
    assert "90s" in str(exc.value)


def test_rejects_non_strings() -> None:
    with pytest.raises(ValueError, match="expected a duration string"):
        parse_duration(90)  # type: ignore[arg-type]


@pytest.mark.parametrize("seconds", [0.0, 0.5, 1.0, 90.0, 3723.0, 7200.0, 45.25])
def test_format_parses_back(seconds: float) -> None:
    assert parse_duration(format_duration(seconds)) == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(90, "1m30s"), (0, "0s"), (0.5, "500ms"), (7200, "2h"), (3723, "1h2m3s"), (-3, "-3s")],
)
def test_format_is_the_short_go_form(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
