"""Calico's selector language: grammar, evaluation semantics, canonical form, errors."""

from __future__ import annotations

import pytest

from model.selector import All, And, Compare, Has, In, Not, Or, SelectorSyntaxError, parse

LABELS = {
    "app": "web",
    "tier": "frontend",
    "kubernetes.io/hostname": "node-1",
    "route-reflector": "true",
    "my_key.v2": "x",
}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("all()", True),
        ("", True),
        ("   ", True),
        ("has(app)", True),
        ("has(missing)", False),
        ("!has(missing)", True),
        ("!has(app)", False),
        ("app == 'web'", True),
        ('app == "web"', True),
        ("app == 'db'", False),
        ("missing == ''", False),
        ("app != 'db'", True),
        ("app != 'web'", False),
        ("missing != 'web'", True),  # Calico: != matches when the label is absent
        ("app in {'web', 'db'}", True),
        ("app in {'db'}", False),
        ("app in {}", False),
        ("missing in {'web'}", False),
        ("app not in {'db'}", True),
        ("app not in {'web','db'}", False),
        ("missing not in {'web'}", True),
        ("kubernetes.io/hostname contains 'de-'", True),
        ("kubernetes.io/hostname starts with 'node'", True),
        ("kubernetes.io/hostname ends with '-1'", True),
        ("kubernetes.io/hostname ends with '-2'", False),
        ("missing contains ''", False),
        ("my_key.v2 == 'x'", True),
        ("route-reflector == 'true'", True),
        ("has(app) && tier == 'frontend'", True),
        ("has(app) && tier == 'backend'", False),
        ("has(nope) || tier == 'frontend'", True),
        ("!(app == 'web')", False),
        ("!!has(app)", True),
        ("(has(app))", True),
        ("all() && has(app)", True),
    ],
)
def test_evaluate(text: str, expected: bool) -> None:
    assert parse(text).evaluate(LABELS) is expected


def test_not_binds_tighter_than_and_which_binds_tighter_than_or() -> None:
    # a || b && c  ==  a || (b && c)
    assert parse("has(a) || has(b) && has(c)") == Or((Has("a"), And((Has("b"), Has("c")))))
    assert parse("has(a) || has(b) && has(c)").evaluate({"a": ""}) is True
    assert parse("(has(a) || has(b)) && has(c)").evaluate({"a": ""}) is False
    # !a && b  ==  (!a) && b
    assert parse("!has(a) && has(b)") == And((Not(Has("a")), Has("b")))
    assert parse("!has(a) && has(b)").evaluate({"b": ""}) is True
    assert parse("!(has(a) && has(b))").evaluate({"a": ""}) is True


def test_ast_shapes() -> None:
    assert parse("") == All()
    assert parse("a == 'x'") == Compare("a", "==", "x")
    assert parse('a starts with "x"') == Compare("a", "starts with", "x")
    assert parse("a in {'y', 'x', 'y'}") == In("a", ("x", "y"))
    assert parse("a not in {}") == In("a", (), negated=True)


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("", "all()"),
        ("  has( a )", "has(a)"),
        ("a=='x'", 'a == "x"'),
        ("a in {'b','a','b'}", 'a in {"a", "b"}'),
        ("has(a) && (has(b) && has(c))", "has(a) && has(b) && has(c)"),
        ("(has(a) || has(b)) && has(c)", "(has(a) || has(b)) && has(c)"),
        ("has(a) || (has(b) && has(c))", "has(a) || has(b) && has(c)"),
        ("!(a == 'x')", '!(a == "x")'),
        ("!(has(a) || has(b))", "!(has(a) || has(b))"),
        ("a == 'say \"hi\"'", "a == 'say \"hi\"'"),
        ('a not in {"x"}', 'a not in {"x"}'),
    ],
)
def test_canonical_form_parses_back_to_the_same_selector(text: str, canonical: str) -> None:
    sel = parse(text)
    assert str(sel) == canonical
    assert parse(str(sel)) == sel


def test_keywords_are_recognised_by_position_so_they_can_be_keys() -> None:
    assert parse("in == 'x'") == Compare("in", "==", "x")
    assert parse("has == 'x'") == Compare("has", "==", "x")
    assert parse("all in {'x'}") == In("all", ("x",))
    assert parse("contains contains 'x'") == Compare("contains", "contains", "x")


def test_selectors_hash_and_compare_by_meaning() -> None:
    assert hash(parse("a in {'x','y'}")) == hash(parse("a in {'y', 'x'}"))
    assert parse("has(a)&&has(b)") == parse("has(a) && has(b)")


@pytest.mark.parametrize(
    ("text", "position", "message"),
    [
        ("has(a) && && b", 10, "unexpected '&' at position 10 (expected a label key)"),
        ("has(a) &&", 9, "unexpected end of selector at position 9 (expected a label key)"),
        ("a = 'b'", 2, "unexpected '=' at position 2 (expected an operator"),
        ("a == b", 5, "unexpected 'b' at position 5 (expected a quoted string)"),
        ("has(a", 5, "unexpected end of selector at position 5 (expected ')' closing has"),
        ("a == 'b", 5, "unterminated string starting at position 5"),
        ("a in {'b' 'c'}", 10, "unexpected \"'\" at position 10 (expected ',' or '}'"),
        ("a in 'b'", 5, "(expected '{' starting a set of strings)"),
        ("a not 'b'", 6, "(expected 'in' after 'not')"),
        ("a starts 'b'", 9, "(expected 'with' after 'starts')"),
        ("has(a) has(b)", 7, "(expected '&&', '||' or the end of the selector)"),
        ("(has(a)", 7, "unexpected end of selector at position 7 (expected ')'"),
        ("has(a) & has(b)", 7, "unexpected '&' at position 7"),
        ("a == 'x' )", 9, "unexpected ')' at position 9"),
        ("all(", 4, "(expected ')' closing all())"),
        ("$x == 'a'", 0, "unexpected '$' at position 0 (expected a label key)"),
        ("a inx {'b'}", 2, "unexpected 'i' at position 2 (expected an operator"),
    ],
)
def test_syntax_errors_name_the_position(text: str, position: int, message: str) -> None:
    with pytest.raises(SelectorSyntaxError) as exc:
        parse(text)
    assert exc.value.position == position
    assert message in str(exc.value)
    assert isinstance(exc.value, ValueError)


def test_non_string_selector_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        parse(None)  # type: ignore[arg-type]
