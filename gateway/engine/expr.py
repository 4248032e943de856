"""A small safe expression language compiled once into numpy closures (no eval).

Grammar (lowest precedence first):
    expr   := and ('or' and)*
    and    := not ('and' not)*
    not    := 'not' not | cmp
    cmp    := sum (('<' | '<=' | '>' | '>=' | '==' | '!=') sum)?
    sum    := term (('+' | '-') term)*
    term   := unary (('*' | '/') unary)*
    unary  := '-' unary | atom
    atom   := NUMBER [UNIT] | DURATION | METRIC | FUNC '(' expr (',' expr)* ')'
            | WINDOW_FUNC '(' METRIC ',' DURATION ')' | 'missing' '(' METRIC ')' | '(' expr ')'

A number may carry a unit (`3800 kPa`); comparing it with a metric of another unit is an error. Durations
(`30s`, `10m`, `1h`) are seconds. Window functions (`avg|min|max|sum|count|stddev|last|delta|rate|changes|
increases_over_time(metric, 10m)`) read the device's recent samples, not just its latest value.

Every node is evaluated for all devices of one appliance type at once. Booleans are float arrays in
three-valued logic (1 true, 0 false, NaN unknown) so a missing metric makes a rule *unknown*, never true:
`not (x > 5)` with x missing stays unknown instead of firing.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol

import numpy as np
import numpy.typing as npt

from gateway.engine.columns import BuiltinColumn
from gateway.engine.durations import DURATION_PATTERN, parse_duration
from gateway.engine.functions import FUNCTIONS, SAME_AS_FIRST_ARGUMENT

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class WindowView:
    """Recent samples of one metric for every device of a batch, oldest first; `valid` marks real samples."""

    values: FloatArray  # [devices, samples]
    ts: FloatArray  # [devices, samples]
    valid: npt.NDArray[np.bool_]  # [devices, samples]
    ordered: bool = False  # samples already in time order (the ring buffer's view), so no sort is needed


class EvalContext(Protocol):
    """What an expression can read: latest values, and windows of recent samples."""

    def column(self, name: str) -> FloatArray: ...

    def builtin(self, column: BuiltinColumn) -> FloatArray:
        """A column the gateway computes for its data-quality rules."""
        ...

    def window(self, name: str, seconds: float) -> WindowView: ...

    def reduced(self, key: tuple[str, str, float], compute: Callable[[], FloatArray]) -> FloatArray:
        """A window reduction, computed once per context however many rules read it."""
        ...

    def last(self, name: str, seconds: float) -> FloatArray:
        """The latest value of `name` if it arrived within `seconds`, else NaN."""
        ...


class MappingContext:
    """Latest values from a mapping, and windows from (ts, values) arrays; for tests and replays."""

    def __init__(self, columns: Mapping[str, FloatArray],
                 windows: Mapping[str, tuple[FloatArray, FloatArray]] | None = None,
                 now: FloatArray | None = None) -> None:
        self._columns = columns
        self._windows = windows or {}
        self._now = now

    def column(self, name: str) -> FloatArray:
        return self._columns[name]

    def builtin(self, column: BuiltinColumn) -> FloatArray:
        raise KeyError(f"a mapping context has no built-in column {column}")

    def reduced(self, key: tuple[str, str, float], compute: Callable[[], FloatArray]) -> FloatArray:
        return compute()

    def window(self, name: str, seconds: float) -> WindowView:
        ts, values = self._windows[name]
        now = self._now if self._now is not None else np.nanmax(ts, axis=1)
        valid = (ts > now[:, None] - seconds) & (ts <= now[:, None]) & ~np.isnan(values)
        return WindowView(values, ts, valid)

    def last(self, name: str, seconds: float) -> FloatArray:
        return _last(self.window(name, seconds))


Evaluate = Callable[[EvalContext], FloatArray]
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
    windows: dict[str, float] = field(default_factory=dict)  # metric -> longest window read (s)
    unit: str | None = None

    def holds(self, context: EvalContext) -> npt.NDArray[np.bool_]:
        """True where the expression is definitely true (unknown counts as not true)."""
        result: npt.NDArray[np.bool_] = self.evaluate(context) == 1.0
        return result


_TOKEN = re.compile(
    rf"\s*(?:(?P<duration>{DURATION_PATTERN})(?![A-Za-z0-9_])"
    r"|(?P<number>\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?)"
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
    unit: str | None = None  # known unit of a quantity, for checking literals against it
    metric: str | None = None  # set when the node is a bare stored metric (window functions need one)
    seconds: float | None = None  # set when the node is a duration literal
    constant: float | None = None  # set when the node is a number literal


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
def _divide(a: FloatArray, b: FloatArray) -> FloatArray:
    """a / b, unknown (NaN) where b is 0: a division by zero is no evidence (inf > 5 would fire)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(b == 0, np.nan, np.divide(a, b))


_ARITH: dict[str, _Binary] = {
    "+": np.add, "-": np.subtract, "*": np.multiply, "/": _divide,
}

class _Parser:
    def __init__(self, source: str, metrics: Mapping[str, str], derived: Mapping[str, str]) -> None:
        self.source = source
        self.stored = metrics
        self.derived = derived
        self.known_metrics = frozenset(metrics) | frozenset(derived)
        self.units = frozenset(metrics.values()) | frozenset(derived.values()) | _EXTRA_UNITS
        self.tokens = _tokenize(source)
        self.pos = 0
        self.used: set[str] = set()
        self.windows: dict[str, float] = {}  # metric -> longest window any function reads
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
            left = _Node("bool", _short_circuit(combine, left.fn, right.fn, 0.0 if keyword == "and" else 1.0),
                         f"{left.text} {keyword} {right.text}")
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
        for quantity, literal in ((left, right), (right, left)):
            if quantity.unit and literal.metric is None and literal.unit and literal.unit != quantity.unit:
                raise ExprError(f"wrong unit: {quantity.text} is in {quantity.unit}, not {literal.unit}",
                                op.column)
        compare = _COMPARE[op.text]
        lf, rf = left.fn, right.fn

        def evaluate(c: EvalContext, lf: Evaluate = lf, rf: Evaluate = rf) -> FloatArray:
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
        if op.text == "/" and right.constant == 0:
            raise ExprError("division by zero", op.column)
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
            unit = None
            if self.peek().kind == "name" and self.peek().text in self.units:
                unit = self.take().text
            text = f"{token.text} {unit}" if unit else token.text
            value = float(token.text)
            return _Node("number", _constant(value), text, unit=unit, constant=value)
        if token.kind == "duration":
            seconds = parse_duration(token.text)
            if seconds is None:
                raise ExprError(f"bad duration {token.text!r}", token.column)
            return _Node("number", _constant(seconds), token.text, unit="s", seconds=seconds)
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
            unit = self.stored.get(name) or self.derived.get(name)
            return _Node("number", lambda c: c.column(name), name, unit=unit,
                         metric=name if name in self.stored else None)
        raise ExprError(f"unexpected {token.text or 'end of expression'!r}", token.column)

    def parse_call(self, name: _Token) -> _Node:
        if name.text == "missing":
            return self.parse_missing(name)
        if name.text in _WINDOW_FUNCTIONS:
            return self.parse_window_call(name)
        function = FUNCTIONS.get(name.text)
        if function is None:
            known = ", ".join(sorted([*FUNCTIONS, *_WINDOW_FUNCTIONS, "missing"]))
            raise ExprError(f"unknown function {name.text!r} (known: {known})", name.column)
        arity, fn = function.arity, function.apply
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
        unit = args[0].unit if function.unit == SAME_AS_FIRST_ARGUMENT else function.unit
        return _Node("number", lambda c: fn(*(f(c) for f in fns)), text, unit=unit)

    def parse_window_call(self, name: _Token) -> _Node:
        self.expect("(")
        metric = self.parse_or()
        self.expect(",")
        duration = self.parse_or()
        self.expect(")")
        if metric.metric is None:
            raise ExprError(f"{name.text}() needs a reported metric as its first argument, got {metric.text!r}",
                            name.column)
        if duration.seconds is None or duration.seconds <= 0:
            raise ExprError(f"{name.text}() needs a duration such as 10m as its second argument, "
                            f"got {duration.text!r}", name.column)
        reduce, unit_of = _WINDOW_FUNCTIONS[name.text]
        column, seconds = metric.metric, duration.seconds

        key = (name.text, column, seconds)

        def evaluate(c: EvalContext) -> FloatArray:  # rules reading the same reduction share one result
            return c.reduced(key, lambda: reduce(c.window(column, seconds)))

        if name.text == "last":  # the latest value and its time answer it without reading the window

            def evaluate(c: EvalContext) -> FloatArray:
                return c.last(column, seconds)

        else:
            self.windows[column] = max(self.windows.get(column, 0.0), seconds)

        return _Node("number", evaluate, f"{name.text}({column}, {duration.text})",
                     unit=unit_of(self.stored[column]))

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

        def evaluate(c: EvalContext) -> FloatArray:
            return np.isnan(c.column(column)).astype(np.float64)

        return _Node("bool", evaluate, f"missing({column})")


# --- window functions: each reduces a WindowView to one value per device (NaN where no sample) -------------------

def _count(w: WindowView) -> FloatArray:
    result: FloatArray = w.valid.sum(axis=1).astype(np.float64)
    return result


def _masked_sum(w: WindowView) -> FloatArray:
    result: FloatArray = np.where(w.valid, w.values, 0.0).sum(axis=1)
    return result


def _avg(w: WindowView) -> FloatArray:
    count = _count(w)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, _masked_sum(w) / count, np.nan)


def _extreme(w: WindowView, pick: Callable[..., FloatArray], fill: float) -> FloatArray:
    picked = pick(np.where(w.valid, w.values, fill), axis=1)
    return np.where(_count(w) > 0, picked, np.nan)


def _stddev(w: WindowView) -> FloatArray:
    mean = _avg(w)
    squares = np.where(w.valid, (w.values - mean[:, None]) ** 2, 0.0).sum(axis=1)
    count = _count(w)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, np.sqrt(squares / count), np.nan)


def _ends(w: WindowView) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    """(first value, first ts, last value, last ts) of each device's valid samples."""
    ts_for_last = np.where(w.valid, w.ts, -np.inf)
    ts_for_first = np.where(w.valid, w.ts, np.inf)
    last_index = ts_for_last.argmax(axis=1)
    first_index = ts_for_first.argmin(axis=1)
    rows = np.arange(w.values.shape[0])
    none = _count(w) == 0
    return (np.where(none, np.nan, w.values[rows, first_index]), np.where(none, np.nan, w.ts[rows, first_index]),
            np.where(none, np.nan, w.values[rows, last_index]), np.where(none, np.nan, w.ts[rows, last_index]))


def _last(w: WindowView) -> FloatArray:
    return _ends(w)[2]


def _delta(w: WindowView) -> FloatArray:
    first, _, last, _ = _ends(w)
    return last - first


def _rate(w: WindowView) -> FloatArray:
    first, first_ts, last, last_ts = _ends(w)
    span = last_ts - first_ts
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(span > 0, (last - first) / span, np.nan)


def steps(w: WindowView) -> FloatArray:
    """Differences between consecutive valid samples in time order (NaN where a pair is not consecutive)."""
    values = np.where(w.valid, w.values, np.nan)
    if not w.ordered:
        order = np.argsort(np.where(w.valid, w.ts, np.inf), axis=1, kind="stable")
        values = np.take_along_axis(values, order, axis=1)
    if np.isnan(values).any():  # compare each sample with the previous valid one, across gaps
        index = np.where(~np.isnan(values), np.arange(values.shape[1]), 0)
        np.maximum.accumulate(index, axis=1, out=index)
        values = np.take_along_axis(values, index, axis=1)
    diffs: FloatArray = np.diff(values, axis=1)
    return diffs


def _changes(w: WindowView) -> FloatArray:
    result: FloatArray = (np.nan_to_num(steps(w), nan=0.0) != 0).sum(axis=1).astype(np.float64)
    return result


def _increases(w: WindowView) -> FloatArray:
    result: FloatArray = (np.nan_to_num(steps(w), nan=0.0) > 0).sum(axis=1).astype(np.float64)
    return result


def _same(unit: str) -> str | None:
    return unit or None


def _difference(unit: str) -> str | None:
    """A change of an absolute temperature is a temperature difference: degC -> K."""
    return "K" if unit == "degC" else (unit or None)


_WINDOW_FUNCTIONS: dict[str, tuple[Callable[[WindowView], FloatArray], Callable[[str], str | None]]] = {
    "avg": (_avg, _same),
    "min": (lambda w: _extreme(w, np.min, np.inf), _same),
    "max": (lambda w: _extreme(w, np.max, -np.inf), _same),
    "sum": (_masked_sum, _same),
    "count": (_count, lambda unit: "count"),
    "stddev": (_stddev, _difference),
    "last": (_last, _same),
    "delta": (_delta, _difference),
    "rate": (_rate, lambda unit: f"{_difference(unit)}/s" if unit else None),
    "changes": (_changes, lambda unit: "count"),
    "increases_over_time": (_increases, lambda unit: "count"),
}
_EXTRA_UNITS = frozenset({"count", "K", "s", "min", "degC", "kPa", "A", "Hz", "W", "V", "percent", "rpm"})


def _constant(value: float) -> Evaluate:
    """A constant; numpy broadcasting aligns it with the batch's columns."""
    constant = np.float64(value)

    def evaluate(context: EvalContext) -> FloatArray:
        return constant  # type: ignore[return-value]

    return evaluate


def _short_circuit(combine: _Binary, left: Evaluate, right: Evaluate, decided_by: float) -> Evaluate:
    """`and` (decided by false) or `or` (decided by true) that skips its right side where the left decides
    every row: most rules open with a cheap state test (compressor on, a phase) before their window functions.
    The result is the same; the evidence of a firing rule is read separately from all its comparisons."""
    def evaluate(context: EvalContext) -> FloatArray:
        a = left(context)
        if np.all(a == decided_by):
            return a
        return combine(a, right(context))

    return evaluate


def _combined(combine: _Binary, left: Evaluate, right: Evaluate) -> Evaluate:
    def evaluate(context: EvalContext) -> FloatArray:
        return combine(left(context), right(context))

    return evaluate


def compile_expr(source: str, metrics: Mapping[str, str] | set[str] | frozenset[str],
                 derived: Mapping[str, str] | None = None, kind: Kind = "bool") -> CompiledExpr:
    """Parse and type-check once. `metrics` maps stored metric names to units (a set: units unknown);
    `derived` names the profile's derived metrics. `kind="number"` compiles a derived metric's formula."""
    stored = metrics if isinstance(metrics, Mapping) else dict.fromkeys(metrics, "")
    parser = _Parser(source, stored, derived or {})
    node = parser.parse()
    if node.kind != kind:
        wanted = "a condition" if kind == "bool" else "a number"
        raise ExprError(f"the expression must be {wanted}, but {node.text!r} is not", 1)
    return CompiledExpr(source, node.fn, frozenset(parser.used), tuple(parser.comparisons),
                        dict(parser.windows), node.unit)
