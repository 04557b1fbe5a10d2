"""Calico's label selector language: parse once, evaluate against many label sets.

Grammar (precedence ``!`` > ``&&`` > ``||``)::

    expr    := and ( '||' and )*
    and     := unary ( '&&' unary )*
    unary   := '!' unary | '(' expr ')' | 'all()' | 'has(' key ')' | key op
    op      := '==' str | '!=' str | 'in' set | 'not' 'in' set
             | 'contains' str | 'starts' 'with' str | 'ends' 'with' str
    set     := '{' [ str ( ',' str )* ] '}'
    str     := '...' | "..."          (no escapes, as in Calico)
    key     := [A-Za-z0-9_./-]+

The AST is made of frozen dataclasses, so two selectors that mean the same thing
structurally compare equal and hash alike (callers cache on them). ``str()`` gives a
canonical text: nested ``&&``/``||`` chains are flattened, sets sorted and deduplicated,
parentheses only where precedence needs them, so ``parse(str(s)) == s``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass

_KEY = re.compile(r"[A-Za-z0-9_./-]+")
_WS = re.compile(r"\s*")
# Word operators must end at a word boundary so that e.g. "k inx" is not "k in x".
_WORD_END = re.compile(r"(?![A-Za-z0-9_./-])")


class SelectorSyntaxError(ValueError):
    """A selector does not parse; ``position`` is the 0-based offending character."""

    def __init__(self, message: str, position: int, text: str) -> None:
        super().__init__(message)
        self.position = position
        self.text = text


class Selector:
    """Base of every selector node."""

    def evaluate(self, labels: Mapping[str, str]) -> bool:
        raise NotImplementedError

    # Binding strength for canonical printing: 3 atom/unary, 2 and, 1 or.
    _PRECEDENCE = 3

    def _child_text(self, child: Selector) -> str:
        text = str(child)
        return f"({text})" if child._PRECEDENCE < self._PRECEDENCE else text


def _quote(value: str) -> str:
    # Calico has no escapes: pick the quote the value does not contain.
    return f"'{value}'" if '"' in value else f'"{value}"'


@dataclass(frozen=True)
class All(Selector):
    def evaluate(self, labels: Mapping[str, str]) -> bool:
        return True

    def __str__(self) -> str:
        return "all()"


@dataclass(frozen=True)
class Has(Selector):
    key: str

    def evaluate(self, labels: Mapping[str, str]) -> bool:
        return self.key in labels

    def __str__(self) -> str:
        return f"has({self.key})"


@dataclass(frozen=True)
class Compare(Selector):
    """``key <op> 'value'`` for ==, !=, contains, starts with, ends with.

    As in Calico, ``!=`` is true when the label is absent; the others are false.
    """

    key: str
    op: str
    value: str

    def evaluate(self, labels: Mapping[str, str]) -> bool:
        actual = labels.get(self.key)
        if self.op == "!=":
            return actual != self.value
        if actual is None:
            return False
        if self.op == "==":
            return actual == self.value
        if self.op == "contains":
            return self.value in actual
        if self.op == "starts with":
            return actual.startswith(self.value)
        if self.op == "ends with":
            return actual.endswith(self.value)
        raise AssertionError(f"unknown operator {self.op!r}")

    def __str__(self) -> str:
        return f"{self.key} {self.op} {_quote(self.value)}"


@dataclass(frozen=True)
class In(Selector):
    """``key in {...}`` / ``key not in {...}``; ``not in`` is true when the label is absent."""

    key: str
    values: tuple[str, ...]  # sorted, unique: set literals are unordered
    negated: bool = False

    def evaluate(self, labels: Mapping[str, str]) -> bool:
        actual = labels.get(self.key)
        found = actual is not None and actual in self.values
        return not found if self.negated else found

    def __str__(self) -> str:
        op = "not in" if self.negated else "in"
        return f"{self.key} {op} {{{', '.join(_quote(v) for v in self.values)}}}"


@dataclass(frozen=True)
class Not(Selector):
    operand: Selector

    def evaluate(self, labels: Mapping[str, str]) -> bool:
        return not self.operand.evaluate(labels)

    def __str__(self) -> str:
        # "!(k in {...})" rather than "!k in {...}": same meaning, easier to read.
        if isinstance(self.operand, Compare | In):
            return f"!({self.operand})"
        return "!" + self._child_text(self.operand)


@dataclass(frozen=True)
class And(Selector):
    operands: tuple[Selector, ...]
    _PRECEDENCE = 2

    def evaluate(self, labels: Mapping[str, str]) -> bool:
        return all(o.evaluate(labels) for o in self.operands)

    def __str__(self) -> str:
        return " && ".join(self._child_text(o) for o in self.operands)


@dataclass(frozen=True)
class Or(Selector):
    operands: tuple[Selector, ...]
    _PRECEDENCE = 1

    def evaluate(self, labels: Mapping[str, str]) -> bool:
        return any(o.evaluate(labels) for o in self.operands)

    def __str__(self) -> str:
        return " || ".join(self._child_text(o) for o in self.operands)


class _Parser:
    """Recursive descent over the raw text; keywords are recognised by position."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    # --- helpers -------------------------------------------------------------------
    def _skip_ws(self) -> None:
        self.pos = _WS.match(self.text, self.pos).end()

    def _error(self, expected: str) -> SelectorSyntaxError:
        self._skip_ws()
        if self.pos >= len(self.text):
            msg = f"unexpected end of selector at position {self.pos} (expected {expected})"
        else:
            msg = f"unexpected {self.text[self.pos]!r} at position {self.pos} (expected {expected})"
        return SelectorSyntaxError(f"{msg} in {self.text!r}", self.pos, self.text)

    def _accept(self, token: str, word: bool = False) -> bool:
        self._skip_ws()
        if not self.text.startswith(token, self.pos):
            return False
        end = self.pos + len(token)
        if word and not _WORD_END.match(self.text, end):
            return False
        self.pos = end
        return True

    def _expect(self, token: str, expected: str, word: bool = False) -> None:
        if not self._accept(token, word):
            raise self._error(expected)

    # --- grammar -------------------------------------------------------------------
    def parse(self) -> Selector:
        result = self._or()
        self._skip_ws()
        if self.pos != len(self.text):
            raise self._error("'&&', '||' or the end of the selector")
        return result

    def _or(self) -> Selector:
        operands = [self._and()]
        while self._accept("||"):
            operands.append(self._and())
        return _flatten(Or, operands)

    def _and(self) -> Selector:
        operands = [self._unary()]
        while self._accept("&&"):
            operands.append(self._unary())
        return _flatten(And, operands)

    def _unary(self) -> Selector:
        self._skip_ws()
        if self._accept("!"):
            # "!=" cannot start a term, so a lone "!" is always negation here.
            return Not(self._unary())
        if self._accept("("):
            inner = self._or()
            self._expect(")", "')' or an operator ('&&', '||')")
            return inner
        start = self.pos
        if self._accept("all", word=True):
            if self._accept("("):
                self._expect(")", "')' closing all()")
                return All()
            self.pos = start
        if self._accept("has", word=True):
            if self._accept("("):
                key = self._key()
                self._expect(")", "')' closing has(...)")
                return Has(key)
            self.pos = start
        key = self._key()
        return self._operation(key)

    def _key(self) -> str:
        self._skip_ws()
        m = _KEY.match(self.text, self.pos)
        if m is None:
            raise self._error("a label key")
        self.pos = m.end()
        return m.group(0)

    def _operation(self, key: str) -> Selector:
        for op in ("==", "!="):
            if self._accept(op):
                return Compare(key, op, self._string())
        if self._accept("in", word=True):
            return In(key, self._set())
        if self._accept("not", word=True):
            self._expect("in", "'in' after 'not'", word=True)
            return In(key, self._set(), negated=True)
        if self._accept("contains", word=True):
            return Compare(key, "contains", self._string())
        for word in ("starts", "ends"):
            if self._accept(word, word=True):
                self._expect("with", f"'with' after '{word}'", word=True)
                return Compare(key, f"{word} with", self._string())
        raise self._error(
            "an operator (==, !=, in, not in, contains, starts with, ends with) after the key"
        )

    def _string(self) -> str:
        self._skip_ws()
        quote = self.text[self.pos : self.pos + 1]
        if quote not in ("'", '"'):
            raise self._error("a quoted string")
        end = self.text.find(quote, self.pos + 1)
        if end < 0:
            raise SelectorSyntaxError(
                f"unterminated string starting at position {self.pos} in {self.text!r}",
                self.pos,
                self.text,
            )
        value = self.text[self.pos + 1 : end]
        self.pos = end + 1
        return value

    def _set(self) -> tuple[str, ...]:
        self._expect("{", "'{' starting a set of strings")
        values: set[str] = set()
        if self._accept("}"):
            return ()
        while True:
            values.add(self._string())
            if self._accept("}"):
                return tuple(sorted(values))
            self._expect(",", "',' or '}' in a set of strings")


def _flatten(cls: type[And] | type[Or], operands: list[Selector]) -> Selector:
    if len(operands) == 1:
        return operands[0]
    flat: list[Selector] = []
    for o in operands:
        flat.extend(o.operands if isinstance(o, cls) else (o,))
    return cls(tuple(flat))


@functools.lru_cache(maxsize=4096)
def parse(text: str) -> Selector:
    """Parse ``text``; empty or whitespace means ``all()``. Raises SelectorSyntaxError."""
    if not isinstance(text, str):
        raise TypeError(f"selector must be a string, got {type(text).__name__}")
    if not text.strip():
        return All()
    return _Parser(text).parse()


def matches(text: str, labels: Mapping[str, str]) -> bool:
    """Convenience: does selector ``text`` select ``labels``?"""
    return parse(text).evaluate(labels)
