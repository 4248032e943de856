"""A small safe expression language compiled once into numpy closures (no eval).

Grammar (lowest precedence first):
    expr   := and ('or' and)*
    and    := not ('and' not)*
    not    := 'not' not | cmp
    cmp    := sum (('<' | '<=' | '>' | '>=' | '==' | '!=') sum)?
    sum    := term (('+' | '-') term)*
    term   := unary (('*' | '/') unary)*
    unary  := '-' unary | atom
    atom   := NUMBER | METRIC | FUNC '(' expr (',' expr)* ')' | 'missing' '(' METRIC ')' | '(' expr ')'

Every node is evaluated for all devices of one appliance type at once. Booleans are float arrays in
three-valued logic (1 true, 0 false, NaN unknown) so a missing metric makes a rule *unknown*, never true:
`not (x > 5)` with x missing stays unknown instead of firing.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
Columns = Mapping[str, FloatArray]
Evaluate = Callable[[Columns], FloatArray]
Kind = Literal["number", "bool"]
_Binary = Callable[[FloatArray, FloatArray], FloatArray]


class ExprError(Exception):
    """A rule expression does not parse or does not type-check; `column` is 1-based."""

    def __init__(self, message: str, column: int) -> None:
        super().__init__(f"column {column}: {message}")
        self.message = message
        self.column = column


@dataclass(frozen=True)
class Comparison:
    """A comparison inside an expression, kept so the evidence can say 'observed X against limit Y'."""

    text: str
    left_text: str
    op: str
    right_text: str
    left: Evaluate
    right: Evaluate


@dataclass(frozen=True)
class CompiledExpr:
    source: str
    evaluate: Evaluate
    metrics: frozenset[str]
    comparisons: tuple[Comparison, ...] = field(default=())

    def holds(self, columns: Columns) -> npt.NDArray[np.bool_]:
        """True where the expression is definitely true (unknown counts as not true)."""
        result: npt.NDArray[np.bool_] = self.evaluate(columns) == 1.0
        return result


_TOKEN = re.compile(
    r"\s*(?:(?P<number>\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?)"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_]*)|(?P<op><=|>=|==|!=|[-+*/<>(),]))"
)
_KEYWORDS = {"and", "or", "not"}
_CMP_OPS = {"<", "<=", ">", ">=", "==", "!="}


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str
    text: str
    column: int


def _tokenize(source: str) -> list[_Token]:
    tokens: list[_Token] = []
    pos = 0
    while pos < len(source):
        if source[pos:].strip() == "":
            break
        match = _TOKEN.match(source, pos)
        if match is None or match.end() == pos:
            column = pos + len(source[pos:]) - len(source[pos:].lstrip()) + 1
            raise ExprError(f"unexpected character {source[column - 1]!r}", column)
        kind = match.lastgroup or "op"
        text = match.group(kind)
        column = match.start(kind) + 1
        if kind == "name" and text in _KEYWORDS:
            kind = "op"
        tokens.append(_Token(kind, text, column))
        pos = match.end()
    tokens.append(_Token("end", "", len(source) + 1))
    return tokens


@dataclass(frozen=True)
class _Node:
    kind: Kind
    fn: Evaluate
    text: str


def _nan_where(mask: npt.NDArray[np.bool_], values: FloatArray) -> FloatArray:
    return np.where(mask, np.nan, values)


def _kleene_and(a: FloatArray, b: FloatArray) -> FloatArray:
    false = (a == 0.0) | (b == 0.0)
    unknown = np.isnan(a) | np.isnan(b)
    return np.where(false, 0.0, np.where(unknown, np.nan, 1.0))


def _kleene_or(a: FloatArray, b: FloatArray) -> FloatArray:
    true = (a == 1.0) | (b == 1.0)
    unknown = np.isnan(a) | np.isnan(b)
    return np.where(true, 1.0, np.where(unknown, np.nan, 0.0))


_COMPARE: dict[str, Callable[[FloatArray, FloatArray], npt.NDArray[np.bool_]]] = {
    "<": np.less, "<=": np.less_equal, ">": np.greater, ">=": np.greater_equal,
    "==": np.equal, "!=": np.not_equal,
}
_ARITH: dict[str, _Binary] = {
    "+": np.add, "-": np.subtract, "*": np.multiply, "/": np.divide,
}
_FUNCTIONS: dict[str, tuple[int, Callable[..., FloatArray]]] = {
    "abs": (1, np.abs),
    "clamp": (3, lambda x, lo, hi: np.clip(x, lo, hi)),
}


class _Parser:
    def __init__(self, source: str, metrics: frozenset[str]) -> None:
        self.source = source
        self.known_metrics = metrics
        self.tokens = _tokenize(source)
        self.pos = 0
        self.used: set[str] = set()
        self.comparisons: list[Comparison] = []

    def peek(self) -> _Token:
        return self.tokens[self.pos]

    def take(self) -> _Token:
        token = self.tokens[self.pos]
        self.pos += 1
        return token

    def expect(self, text: str) -> _Token:
        token = self.take()
        if token.text != text:
            raise ExprError(f"expected {text!r}, found {token.text or 'end of expression'!r}", token.column)
        return token

    def parse(self) -> _Node:
        node = self.parse_or()
        token = self.peek()
        if token.kind != "end":
            raise ExprError(f"unexpected {token.text!r}", token.column)
        return node

    def require(self, node: _Node, kind: Kind, token: _Token) -> None:
        if node.kind != kind:
            wanted = "a condition (comparison)" if kind == "bool" else "a number"
            raise ExprError(f"{token.text!r} needs {wanted}, but {node.text!r} is not", token.column)

    def parse_or(self) -> _Node:
        return self._logical(self.parse_and, "or", _kleene_or)

    def parse_and(self) -> _Node:
        return self._logical(self.parse_not, "and", _kleene_and)

    def _logical(self, operand: Callable[[], _Node], keyword: str, combine: _Binary) -> _Node:
        left = operand()
        while self.peek().text == keyword:
            op = self.take()
            right = operand()
            self.require(left, "bool", op)
            self.require(right, "bool", op)
            left = _Node("bool", _combined(combine, left.fn, right.fn), f"{left.text} {keyword} {right.text}")
        return left

    def parse_not(self) -> _Node:
        if self.peek().text == "not":
            op = self.take()
            inner = self.parse_not()
            self.require(inner, "bool", op)
            return _Node("bool", _combined(np.subtract, _constant(1.0), inner.fn), f"not {inner.text}")
        return self.parse_cmp()

    def parse_cmp(self) -> _Node:
        left = self.parse_sum()
        if self.peek().text not in _CMP_OPS:
            return left
        op = self.take()
        right = self.parse_sum()
        self.require(left, "number", op)
        self.require(right, "number", op)
        compare = _COMPARE[op.text]
        lf, rf = left.fn, right.fn

        def evaluate(c: Columns, lf: Evaluate = lf, rf: Evaluate = rf) -> FloatArray:
            a, b = lf(c), rf(c)
            return _nan_where(np.isnan(a) | np.isnan(b), compare(a, b).astype(np.float64))

        text = f"{left.text} {op.text} {right.text}"
        self.comparisons.append(Comparison(text, left.text, op.text, right.text, lf, rf))
        if self.peek().text in _CMP_OPS:
            raise ExprError("comparisons do not chain; join them with 'and'", self.peek().column)
        return _Node("bool", evaluate, text)

    def parse_sum(self) -> _Node:
        left = self.parse_term()
        while self.peek().text in ("+", "-"):
            left = self._arith(left, self.take(), self.parse_term())
        return left

    def parse_term(self) -> _Node:
        left = self.parse_unary()
        while self.peek().text in ("*", "/"):
            left = self._arith(left, self.take(), self.parse_unary())
        return left

    def _arith(self, left: _Node, op: _Token, right: _Node) -> _Node:
        self.require(left, "number", op)
        self.require(right, "number", op)
        return _Node("number", _combined(_ARITH[op.text], left.fn, right.fn), f"{left.text} {op.text} {right.text}")

    def parse_unary(self) -> _Node:
        if self.peek().text == "-":
            op = self.take()
            inner = self.parse_unary()
            self.require(inner, "number", op)
            return _Node("number", _combined(np.subtract, _constant(0.0), inner.fn), f"-{inner.text}")
        return self.parse_atom()

    def parse_atom(self) -> _Node:
        token = self.take()
        if token.kind == "number":
            return _Node("number", _constant(float(token.text)), token.text)
        if token.text == "(":
            inner = self.parse_or()
            self.expect(")")
            return _Node(inner.kind, inner.fn, f"({inner.text})")
        if token.kind == "name":
            if self.peek().text == "(":
                return self.parse_call(token)
            if token.text not in self.known_metrics:
                known = ", ".join(sorted(self.known_metrics))
                raise ExprError(f"unknown metric {token.text!r} (this appliance has: {known})", token.column)
            self.used.add(token.text)
            name = token.text
            return _Node("number", lambda c: c[name], name)
        raise ExprError(f"unexpected {token.text or 'end of expression'!r}", token.column)

    def parse_call(self, name: _Token) -> _Node:
        if name.text == "missing":
            return self.parse_missing(name)
        if name.text not in _FUNCTIONS:
            raise ExprError(f"unknown function {name.text!r} (known: {', '.join(sorted(_FUNCTIONS))})",
                            name.column)
        arity, fn = _FUNCTIONS[name.text]
        self.expect("(")
        args = [self.parse_or()]
        while self.peek().text == ",":
            self.take()
            args.append(self.parse_or())
        self.expect(")")
        if len(args) != arity:
            raise ExprError(f"{name.text}() takes {arity} argument(s), got {len(args)}", name.column)
        for arg in args:
            self.require(arg, "number", name)
        fns = [a.fn for a in args]
        text = f"{name.text}({', '.join(a.text for a in args)})"
        return _Node("number", lambda c: fn(*(f(c) for f in fns)), text)

    def parse_missing(self, name: _Token) -> _Node:
        """missing(metric): a known condition, true where the device has never reported that metric, so a rule
        can apply only to appliances without a sensor (it is never unknown itself)."""
        self.expect("(")
        metric = self.take()
        if metric.kind != "name" or metric.text not in self.known_metrics:
            raise ExprError(f"missing() takes one metric name, got {metric.text!r}", metric.column)
        self.expect(")")
        self.used.add(metric.text)
        column = metric.text

        def evaluate(c: Columns) -> FloatArray:
            return np.isnan(c[column]).astype(np.float64)

        return _Node("bool", evaluate, f"missing({column})")


def _constant(value: float) -> Evaluate:
    """A constant as a column of the batch's length (taken from any column), so results always align."""

    def evaluate(columns: Columns) -> FloatArray:
        length = len(next(iter(columns.values()))) if columns else 0
        return np.full(length, value)

    return evaluate


def _combined(combine: _Binary, left: Evaluate, right: Evaluate) -> Evaluate:
    def evaluate(columns: Columns) -> FloatArray:
        return combine(left(columns), right(columns))

    return evaluate


def compile_expr(source: str, metrics: frozenset[str] | set[str]) -> CompiledExpr:
    """Parse and type-check once; the result evaluates over column arrays of any length."""
    parser = _Parser(source, frozenset(metrics))
    node = parser.parse()
    if node.kind != "bool":
        raise ExprError(f"the expression must be a condition, but {node.text!r} is a number", 1)
    return CompiledExpr(source, node.fn, frozenset(parser.used), tuple(parser.comparisons))
