"""A small safe expression language compiled once into numpy closures (no eval).

Grammar (lowest precedence first):
    expr   := and ('or' and)*
    and    := not ('and' not)*
    not    := 'not' not | cmp
    cmp    := sum (('<' | '<=' | '>' | '>=' | '==' | '!=') sum)?
    sum    := term (('+' | '-') term)*
    term   := unary (('*' | '/') unary)*
    unary  := '-' unary | atom
    atom   := NUMBER [UNIT] | DURATION | NAME | FUNC '(' expr (',' expr)* ')'
            | WINDOW_FUNC '(' expr ',' DURATION ')' | 'missing' '(' METRIC ')' | '(' expr ')'
    NAME   := a reported or derived metric | a per-device parameter | a named condition

A number may carry a unit (`3800 kPa`). Units are carried through arithmetic (`supply - mixed` of two degC
metrics is in K) and checked where quantities meet: comparing kPa with K is an error, a degC literal against
a degF metric is converted, and so is a degF quantity meeting a degC one. Durations (`30s`, `10m`, `1h`) are
seconds. Window functions (`avg|min|max|sum|count|stddev|last|delta|rate|changes|increases_over_time|
fraction(x, 10m)`) read the device's recent samples, not just its latest value; `x` is a metric or any
expression over metrics (evaluated at every sample, each metric carried forward from its last report), and
`fraction(condition, 30m)` is the share of the last 30 min the condition held; `delta(x, 2h, condition)` and
`rate(x, 2h, condition)` count only the change between consecutive samples at which the condition held.
`min(a, b)`, `max(a, b)` and `if(condition, a, b)` work sample by sample.

Every node is evaluated for all devices of one appliance type at once. Booleans are float arrays in
three-valued logic (1 true, 0 false, NaN unknown) so a missing metric makes a rule *unknown*, never true:
`not (x > 5)` with x missing stays unknown instead of firing.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Literal, Protocol

import numpy as np
import numpy.typing as npt

from gateway.engine.columns import BuiltinColumn
from gateway.engine.durations import DURATION_PATTERN, parse_duration
from gateway.engine.functions import FUNCTIONS, SAME_AS_FIRST_ARGUMENT

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
Evaluate = Callable[["EvalContext"], FloatArray]


@dataclass(frozen=True)
class WindowView:
    """Recent samples of one metric for every device of a batch, oldest first; `valid` marks real samples."""

    values: FloatArray  # [devices, samples]
    ts: FloatArray  # [devices, samples]
    valid: npt.NDArray[np.bool_]  # [devices, samples]
    ordered: bool = False  # samples already in time order (the ring buffer's view), so no sort is needed
    start: FloatArray | None = None  # [devices] the window's start; samples before it may be included, not valid
    end: FloatArray | None = None  # [devices] the window's end (each device's latest sample)
    hold: FloatArray | None = None  # [devices] the longest a sample stands for (the longest observed gap)


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

    def parameter(self, name: str) -> FloatArray:
        """Each device's value of a per-device parameter (from its meta, else the profile's default)."""
        ...

    def series(self, text: str, evaluate: Evaluate, seconds: float) -> WindowView:
        """An expression evaluated at every sample of the last `seconds` (each metric carried forward from
        its last report), as a window; `text` names it for caching."""
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

    def parameter(self, name: str) -> FloatArray:
        return self._columns[name]

    def series(self, text: str, evaluate: Evaluate, seconds: float) -> WindowView:
        """All windows of a mapping context share one time axis (the first window's)."""
        ts = next(iter(self._windows.values()))[0]
        now = self._now if self._now is not None else np.nanmax(ts, axis=1)
        columns = {name: carry_forward(values) for name, (_, values) in self._windows.items()}
        values = np.broadcast_to(evaluate(MappingContext(columns, now=now)), ts.shape).astype(np.float64)
        valid = (ts > now[:, None] - seconds) & (ts <= now[:, None]) & ~np.isnan(values)
        return WindowView(values, ts, valid, start=now - seconds, end=now, hold=np.full(now.shape, np.inf))


def carry_forward(values: FloatArray) -> FloatArray:
    """Each NaN replaced by the last value before it in its row (a metric stands until it is reported again)."""
    index = np.where(~np.isnan(values), np.arange(values.shape[1]), 0)
    np.maximum.accumulate(index, axis=1, out=index)
    result: FloatArray = np.take_along_axis(values, index, axis=1)
    return result


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
    bound: tuple[str, str, float] | None = None  # (metric, op, value) for `metric op literal`, either way round


@dataclass(frozen=True)
class HeldComparison:
    """A comparison that made an expression true, on the rows (a mask) where it did."""

    comparison: Comparison
    op: str  # as written, or its complement where it counted by being false (under a `not`)
    rows: BoolArray


Support = Callable[["EvalContext", BoolArray, BoolArray], list[HeldComparison]]


@dataclass(frozen=True)
class CompiledExpr:
    source: str
    evaluate: Evaluate
    metrics: frozenset[str]
    comparisons: tuple[Comparison, ...] = field(default=())
    windows: dict[str, float] = field(default_factory=dict)  # metric or expression -> longest window read (s)
    unit: str | None = None
    support: Support | None = None

    def holds(self, context: EvalContext) -> npt.NDArray[np.bool_]:
        """True where the expression is definitely true (unknown counts as not true)."""
        result: npt.NDArray[np.bool_] = self.evaluate(context) == 1.0
        return result

    def held(self, context: EvalContext, rows: BoolArray) -> list[HeldComparison]:
        """The comparisons that made the expression true on `rows`, in source order: a branch of an `or` that
        was false, or one inside a sub-expression that did not decide the result, is not evidence."""
        if self.support is None:
            return []
        return self.support(context, rows, np.zeros_like(rows))


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
    support: Support | None = None  # for conditions: which comparisons made it true (the ticket's evidence)


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
_COMPLEMENT = {"<": ">=", "<=": ">", ">": "<=", ">=": "<", "==": "!=", "!=": "=="}
_MIRROR = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "==": "==", "!=": "!="}


def _divide(a: FloatArray, b: FloatArray) -> FloatArray:
    """a / b, unknown (NaN) where b is 0: a division by zero is no evidence (inf > 5 would fire)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(b == 0, np.nan, np.divide(a, b))


_ARITH: dict[str, _Binary] = {
    "+": np.add, "-": np.subtract, "*": np.multiply, "/": _divide,
}

# --- units: absolute temperatures, their differences, and the literal conversions a comparison may make --------
_TEMPERATURES = {"degC", "degF"}
_DIFFERENCE_SCALE = {"degF": 5.0 / 9.0}  # a change of a degF metric, in K
_CONVERSIONS: dict[tuple[str, str], Callable[[FloatArray], FloatArray]] = {
    ("degC", "degF"): lambda v: v * 9.0 / 5.0 + 32.0,
    ("degF", "degC"): lambda v: (v - 32.0) * 5.0 / 9.0,
}


def _converted(node: _Node, unit: str) -> _Node | None:
    """`node` in `unit`, where a conversion exists: a literal becomes another literal, a quantity is wrapped."""
    convert = _CONVERSIONS.get((node.unit or "", unit))
    if convert is None:
        return None
    if node.constant is not None:
        value = float(convert(np.array(node.constant)))
        return _Node("number", _constant(value), f"{value:g} {unit}", unit=unit, constant=value)
    fn = node.fn
    return _Node("number", lambda c: convert(fn(c)), node.text, unit=unit)


def _difference(unit: str | None) -> str | None:
    """A change of an absolute temperature is a temperature difference, in K (a degF change is converted)."""
    return "K" if unit in _TEMPERATURES else (unit or None)


def _scaled(fn: Evaluate, scale: float) -> Evaluate:
    if scale == 1.0:
        return fn
    return lambda c: fn(c) * scale


class _Parser:
    def __init__(self, source: str, metrics: Mapping[str, str], derived: Mapping[str, str],
                 parameters: Mapping[str, str], conditions: Mapping[str, str],
                 expanding: frozenset[str] = frozenset()) -> None:
        self.source = source
        self.stored = metrics
        self.derived = derived
        self.parameters = parameters
        self.conditions = conditions
        self.expanding = expanding  # named conditions being expanded (a condition may not refer to itself)
        self.known_metrics = frozenset(metrics) | frozenset(derived)
        self.units = (frozenset(metrics.values()) | frozenset(derived.values()) | frozenset(parameters.values())
                      | _EXTRA_UNITS)
        self.tokens = _tokenize(source)
        self.pos = 0
        self.used: set[str] = set()
        self.windows: dict[str, float] = {}  # metric or expression -> longest window any function reads
        self.comparisons: list[Comparison] = []
        self.window_calls = 0  # window functions parsed so far (they do not nest)

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
            fn = _short_circuit(combine, left.fn, right.fn, 0.0 if keyword == "and" else 1.0)
            left = _Node("bool", fn, f"{left.text} {keyword} {right.text}",
                         support=_gated_support(fn, (left.support, right.support)))
        return left

    def parse_not(self) -> _Node:
        if self.peek().text == "not":
            op = self.take()
            inner = self.parse_not()
            self.require(inner, "bool", op)
            fn = _combined(np.subtract, _constant(1.0), inner.fn)
            return _Node("bool", fn, f"not {inner.text}", support=_negated_support(fn, inner.support))
        return self.parse_cmp()

    def parse_cmp(self) -> _Node:
        left = self.parse_sum()
        if self.peek().text not in _CMP_OPS:
            return left
        op = self.take()
        right = self.parse_sum()
        self.require(left, "number", op)
        self.require(right, "number", op)
        left, right = self._matching_units(left, right, op, f"{op.text!r} compares")
        compare = _COMPARE[op.text]
        lf, rf = left.fn, right.fn

        def evaluate(c: EvalContext, lf: Evaluate = lf, rf: Evaluate = rf) -> FloatArray:
            a, b = lf(c), rf(c)
            return _nan_where(np.isnan(a) | np.isnan(b), compare(a, b).astype(np.float64))

        text = f"{left.text} {op.text} {right.text}"
        bound = None
        if left.metric is not None and right.constant is not None:
            bound = (left.metric, op.text, right.constant)
        elif right.metric is not None and left.constant is not None:
            bound = (right.metric, _MIRROR[op.text], left.constant)
        comparison = Comparison(text, left.text, op.text, right.text, lf, rf, bound)
        self.comparisons.append(comparison)
        if self.peek().text in _CMP_OPS:
            raise ExprError("comparisons do not chain; join them with 'and'", self.peek().column)
        return _Node("bool", evaluate, text, support=_comparison_support(evaluate, comparison))

    def _matching_units(self, left: _Node, right: _Node, token: _Token, verb: str) -> tuple[_Node, _Node]:
        """The two sides with compatible units: equal, or one side unknown, or converted: a literal to the other
        side's unit (a degC literal against a degF metric), a degF quantity to degC. Anything else is an error."""
        if left.unit is None or right.unit is None or left.unit == right.unit:
            return left, right
        for quantity, other, swap in ((left, right, False), (right, left, True)):
            if other.constant is not None or other.unit == "degF":
                converted = _converted(other, quantity.unit or "")
                if converted is not None:
                    return (converted, quantity) if swap else (quantity, converted)
        raise ExprError(f"wrong unit: {verb} {left.text} (in {left.unit}) with {right.text} (in {right.unit})",
                        token.column)

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
        if left.unit in _TEMPERATURES and right.unit in _TEMPERATURES and left.unit != right.unit:
            left, right = self._matching_units(left, right, op, f"{op.text!r} combines")
        fn, unit = self._arith_unit(left, op, right, _combined(_ARITH[op.text], left.fn, right.fn))
        return _Node("number", fn, f"{left.text} {op.text} {right.text}", unit=unit)

    def _arith_unit(self, left: _Node, op: _Token, right: _Node, fn: Evaluate) -> tuple[Evaluate, str | None]:
        """(evaluate, unit) of `left op right`: a sum keeps its unit, the difference of two temperatures is a
        temperature difference in K (of two degF metrics, converted), a temperature plus or minus a difference
        stays a temperature; a product or quotient with a plain number keeps the other side's unit, any other
        product is unchecked."""
        lu, ru = left.unit, right.unit
        if op.text in "*/":
            plain_left = left.constant is not None and lu is None
            plain_right = right.constant is not None and ru is None
            return fn, (ru if plain_left and op.text == "*" else lu if plain_right else None)
        if lu is None or ru is None:
            plain = right if ru is None else left
            return fn, ((lu or ru) if plain.constant is not None else None)
        if lu == ru and lu in _TEMPERATURES:
            if op.text == "-":
                return _scaled(fn, _DIFFERENCE_SCALE.get(lu, 1.0)), "K"
            return fn, lu  # (a + b) / 2 of two temperatures is a temperature
        if lu == ru:
            return fn, lu
        if lu == "degC" and ru == "K":
            return fn, "degC"
        if lu == "K" and ru == "degC" and op.text == "+":
            return fn, "degC"
        raise ExprError(f"wrong unit: {op.text!r} combines {left.text} (in {lu}) with {right.text} (in {ru})",
                        op.column)

    def parse_unary(self) -> _Node:
        if self.peek().text == "-":
            op = self.take()
            inner = self.parse_unary()
            self.require(inner, "number", op)
            constant = None if inner.constant is None else -inner.constant
            return _Node("number", _combined(np.subtract, _constant(0.0), inner.fn), f"-{inner.text}",
                         unit=inner.unit, constant=constant)
        return self.parse_atom()

    def parse_atom(self) -> _Node:
        token = self.take()
        if token.kind == "number":
            unit = None
            if self.peek().kind == "name" and self.peek().text in self.units:
                unit = self.take().text
            text = f"{token.text} {unit}" if unit else token.text
            value = float(token.text)
            if not math.isfinite(value):
                raise ExprError(f"number {token.text!r} is too large", token.column)
            return _Node("number", _constant(value), text, unit=unit, constant=value)
        if token.kind == "duration":
            seconds = parse_duration(token.text)
            if seconds is None:
                raise ExprError(f"bad duration {token.text!r}", token.column)
            return _Node("number", _constant(seconds), token.text, unit="s", seconds=seconds)
        if token.text == "(":
            inner = self.parse_or()
            self.expect(")")
            return replace(inner, text=f"({inner.text})", metric=None)
        if token.kind == "name":
            if self.peek().text == "(":
                return self.parse_call(token)
            return self.parse_name(token)
        raise ExprError(f"unexpected {token.text or 'end of expression'!r}", token.column)

    def parse_name(self, token: _Token) -> _Node:
        name = token.text
        if name in self.known_metrics:
            self.used.add(name)
            unit = self.stored.get(name) or self.derived.get(name)
            return _Node("number", lambda c: c.column(name), name, unit=unit,
                         metric=name if name in self.stored else None)
        if name in self.parameters:
            return _Node("number", lambda c: c.parameter(name), name, unit=self.parameters[name] or None)
        if name in self.conditions:
            return self.parse_condition(token)
        known = ", ".join(sorted(self.known_metrics))
        others = "".join(f"; {kind}: {', '.join(sorted(names))}" for kind, names in
                         (("parameters", self.parameters), ("conditions", self.conditions)) if names)
        raise ExprError(f"unknown metric {name!r} (this appliance has: {known}{others})", token.column)

    def parse_condition(self, token: _Token) -> _Node:
        """A named condition is compiled in place, as if its text were written here in parentheses."""
        name = token.text
        if name in self.expanding:
            raise ExprError(f"condition {name!r} refers to itself", token.column)
        inner = _Parser(self.conditions[name], self.stored, self.derived, self.parameters, self.conditions,
                        self.expanding | {name})
        try:
            node = inner.parse()
        except ExprError as exc:
            raise ExprError(f"in condition {name!r}, column {exc.column}: {exc.message}", token.column) from None
        if node.kind != "bool":
            raise ExprError(f"condition {name!r} must be a condition, but {node.text!r} is not", token.column)
        self.used |= inner.used
        for key, seconds in inner.windows.items():
            self.windows[key] = max(self.windows.get(key, 0.0), seconds)
        self.comparisons.extend(inner.comparisons)
        self.window_calls += inner.window_calls
        return _Node("bool", node.fn, name, support=node.support)

    def parse_arguments(self) -> list[_Node]:
        self.expect("(")
        args = [self.parse_or()]
        while self.peek().text == ",":
            self.take()
            args.append(self.parse_or())
        self.expect(")")
        return args

    def parse_call(self, name: _Token) -> _Node:
        if name.text == "missing":
            return self.parse_missing(name)
        if name.text in _WINDOW_FUNCTIONS:
            return self.parse_window_call(name)
        if name.text == "if":
            return self.parse_if(name)
        function = FUNCTIONS.get(name.text)
        if function is None:
            known = ", ".join(sorted([*FUNCTIONS, *_WINDOW_FUNCTIONS, "missing", "if"]))
            raise ExprError(f"unknown function {name.text!r} (known: {known})", name.column)
        arity, fn = function.arity, function.apply
        args = self.parse_arguments()
        if len(args) != arity:
            raise ExprError(f"{name.text}() takes {arity} argument(s), got {len(args)}", name.column)
        for arg in args:
            self.require(arg, "number", name)
        fns = [a.fn for a in args]
        text = f"{name.text}({', '.join(a.text for a in args)})"
        unit = args[0].unit if function.unit == SAME_AS_FIRST_ARGUMENT else function.unit
        return _Node("number", lambda c: fn(*(f(c) for f in fns)), text, unit=unit)

    def parse_if(self, name: _Token) -> _Node:
        """if(condition, a, b): a where the condition holds, b where it does not, unknown where it is unknown."""
        args = self.parse_arguments()
        if len(args) != 3:
            raise ExprError(f"if() takes 3 arguments (condition, value if true, value if false), got {len(args)}",
                            name.column)
        condition, when_true, when_false = args
        self.require(condition, "bool", name)
        self.require(when_true, "number", name)
        self.require(when_false, "number", name)
        when_true, when_false = self._matching_units(when_true, when_false, name, "if() chooses between")
        test, a, b = condition.fn, when_true.fn, when_false.fn

        def evaluate(c: EvalContext) -> FloatArray:
            held = test(c)
            return np.where(held == 1.0, a(c), np.where(held == 0.0, b(c), np.nan))

        return _Node("number", evaluate, f"if({condition.text}, {when_true.text}, {when_false.text})",
                     unit=when_true.unit or when_false.unit)

    def parse_window_call(self, name: _Token) -> _Node:
        before = self.window_calls
        args = self.parse_arguments()
        nested = self.window_calls > before
        if name.text in ("min", "max") and len(args) == 2 and args[1].seconds is None:
            return self.parse_pairwise(name, args)
        if name.text in _CONDITIONAL_FUNCTIONS and len(args) == 3:
            return self.parse_conditional_change(name, args, nested)
        if len(args) != 2:
            raise ExprError(f"{name.text}() takes 2 arguments (a metric or expression, and a duration such as "
                            f"10m), got {len(args)}", name.column)
        subject, duration = args
        seconds = self._window_seconds(name, duration, nested)
        if name.text == "fraction" and subject.kind != "bool":
            raise ExprError(f"fraction() needs a condition as its first argument, got {subject.text!r}",
                            name.column)
        self.window_calls += 1
        reduce, unit_of = _WINDOW_FUNCTIONS[name.text]
        text = f"{name.text}({subject.text}, {duration.text})"
        scale = _DIFFERENCE_SCALE.get(subject.unit or "", 1.0) if name.text in _CHANGE_FUNCTIONS else 1.0
        unit = unit_of(subject.unit or "")
        if subject.metric is None or name.text == "fraction":  # an expression: evaluated at every sample
            inner, key_text = subject.fn, subject.text
            self.windows[key_text] = max(self.windows.get(key_text, 0.0), seconds)
            series_key = (name.text, key_text, seconds)

            def evaluate_series(c: EvalContext) -> FloatArray:
                return c.reduced(series_key, lambda: reduce(c.series(key_text, inner, seconds)))

            return _Node("number", _scaled(evaluate_series, scale), text, unit=unit)
        column = subject.metric
        key = (name.text, column, seconds)

        def evaluate(c: EvalContext) -> FloatArray:  # rules reading the same reduction share one result
            return c.reduced(key, lambda: reduce(c.window(column, seconds)))

        if name.text == "last":  # the latest value and its time answer it without reading the window

            def evaluate(c: EvalContext) -> FloatArray:
                return c.last(column, seconds)

        else:
            self.windows[column] = max(self.windows.get(column, 0.0), seconds)
        return _Node("number", _scaled(evaluate, scale), text, unit=unit)

    def _window_seconds(self, name: _Token, duration: _Node, nested: bool) -> float:
        """A window function's length: a positive duration literal; its arguments may read no window."""
        if duration.seconds is None or duration.seconds <= 0:
            raise ExprError(f"{name.text}() needs a duration such as 10m as its second argument, "
                            f"got {duration.text!r}", name.column)
        if nested:
            raise ExprError(f"{name.text}(): window functions do not nest", name.column)
        return duration.seconds

    def parse_conditional_change(self, name: _Token, args: list[_Node], nested: bool) -> _Node:
        """delta(x, 2h, condition) and rate(x, 2h, condition): the change of x (and per second) counted only
        between consecutive samples at both of which the condition held, so that what happens in between
        (a draw from a tank being heated) does not count: the heating rate over a day's heating periods."""
        subject, duration, condition = args
        if subject.kind != "number" or condition.kind != "bool":
            raise ExprError(f"{name.text}(x, duration, condition) needs a number and a condition, got "
                            f"{subject.text!r} and {condition.text!r}", name.column)
        seconds = self._window_seconds(name, duration, nested)
        self.window_calls += 1
        per_second = name.text == "rate"
        x_text, when_text, x_fn, when_fn = subject.text, condition.text, subject.fn, condition.fn
        for text in (x_text, when_text):
            self.windows[text] = max(self.windows.get(text, 0.0), seconds)
        key = (name.text, f"{x_text} when {when_text}", seconds)

        def evaluate(c: EvalContext) -> FloatArray:
            return c.reduced(key, lambda: _change_while(c.series(x_text, x_fn, seconds),
                                                        c.series(when_text, when_fn, seconds), per_second))

        unit = _difference(subject.unit)
        if per_second and unit:
            unit = f"{unit}/s"
        scale = _DIFFERENCE_SCALE.get(subject.unit or "", 1.0)
        return _Node("number", _scaled(evaluate, scale), f"{name.text}({x_text}, {duration.text}, {when_text})",
                     unit=unit)

    def parse_pairwise(self, name: _Token, args: list[_Node]) -> _Node:
        """min(a, b) and max(a, b) of two quantities, sample by sample (unknown if either is)."""
        for arg in args:
            self.require(arg, "number", name)
        left, right = self._matching_units(args[0], args[1], name, f"{name.text}() compares")
        pick = np.minimum if name.text == "min" else np.maximum
        lf, rf = left.fn, right.fn
        return _Node("number", lambda c: pick(lf(c), rf(c)), f"{name.text}({left.text}, {right.text})",
                     unit=left.unit or right.unit)

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


# --- evidence: which comparisons made a condition true -------------------------------------------------------------

def _comparison_support(evaluate: Evaluate, comparison: Comparison) -> Support:
    def support(c: EvalContext, want: BoolArray, avoid: BoolArray) -> list[HeldComparison]:
        value = np.broadcast_to(evaluate(c), want.shape)
        found = []
        if (held := want & (value == 1.0)).any():
            found.append(HeldComparison(comparison, comparison.op, held))
        if (held := avoid & (value == 0.0)).any():
            found.append(HeldComparison(comparison, _COMPLEMENT[comparison.op], held))
        return found

    return support


def _gated_support(evaluate: Evaluate, parts: tuple[Support | None, ...]) -> Support:
    """`and` / `or`: asked why it is true (want) or false (avoid), it asks its parts only on the rows where it
    is; each part answers only where it agrees, so the false branch of a true `or` says nothing."""
    def support(c: EvalContext, want: BoolArray, avoid: BoolArray) -> list[HeldComparison]:
        value = np.broadcast_to(evaluate(c), want.shape)
        want, avoid = want & (value == 1.0), avoid & (value == 0.0)
        return [held for part in parts if part is not None for held in part(c, want, avoid)]

    return support


def _negated_support(evaluate: Evaluate, inner: Support | None) -> Support | None:
    if inner is None:
        return None

    def support(c: EvalContext, want: BoolArray, avoid: BoolArray) -> list[HeldComparison]:
        value = np.broadcast_to(evaluate(c), want.shape)
        return inner(c, avoid & (value == 0.0), want & (value == 1.0))

    return support


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


def _fraction(w: WindowView) -> FloatArray:
    """The share of the window's time a condition held. Each sample's value stands until the next sample, at
    most `hold` seconds (a longer gap was not observed); the sample before the window's start counts from the
    start. Time without data counts as not holding, so a device needs the whole window to reach 1."""
    assert w.start is not None and w.end is not None and w.hold is not None
    order = None if w.ordered else np.argsort(np.where(np.isnan(w.ts), np.inf, w.ts), axis=1, kind="stable")
    values = w.values if order is None else np.take_along_axis(w.values, order, axis=1)
    ts = w.ts if order is None else np.take_along_axis(w.ts, order, axis=1)
    end, start = w.end[:, None], w.start[:, None]
    present = ~np.isnan(values) & ~np.isnan(ts) & (ts <= end)
    at = np.where(present, ts, np.inf)
    after = np.concatenate([at[:, 1:], np.full((at.shape[0], 1), np.inf)], axis=1)
    following = np.minimum.accumulate(after[:, ::-1], axis=1)[:, ::-1]  # the next present sample's time
    until = np.minimum(np.minimum(following, end), at + w.hold[:, None])
    with np.errstate(invalid="ignore"):
        span = np.where(present, np.clip(until - np.maximum(at, start), 0.0, None), 0.0)
    held: FloatArray = np.where(values == 1.0, span, 0.0).sum(axis=1)
    length = w.end - w.start
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(length > 0, held / length, np.nan)


def _change_while(x: WindowView, when: WindowView, per_second: bool) -> FloatArray:
    """The summed change of x between consecutive samples at both of which `when` held (and no longer apart
    than a sample stands for); per second of those pairs' time with `per_second`. NaN where no pair."""
    assert x.hold is not None
    ok = x.valid & (np.broadcast_to(when.values, x.values.shape) == 1.0)
    dt = np.diff(x.ts, axis=1)
    with np.errstate(invalid="ignore"):
        pairs = ok[:, 1:] & ok[:, :-1] & (dt <= x.hold[:, None])
    change = np.where(pairs, np.diff(x.values, axis=1), 0.0).sum(axis=1)
    if not per_second:
        return np.where(pairs.any(axis=1), change, np.nan)
    elapsed = np.where(pairs, dt, 0.0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(elapsed > 0, change / elapsed, np.nan)


_CONDITIONAL_FUNCTIONS = {"delta", "rate"}
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
    "fraction": (_fraction, lambda unit: None),
}
_CHANGE_FUNCTIONS = {"stddev", "delta", "rate"}  # their result is a difference: a degF one is converted to K
_EXTRA_UNITS = frozenset({"count", "K", "s", "min", "degC", "degF", "kPa", "A", "Hz", "W", "V", "percent", "rpm"})


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
                 derived: Mapping[str, str] | None = None, kind: Kind = "bool",
                 parameters: Mapping[str, str] | None = None,
                 conditions: Mapping[str, str] | None = None) -> CompiledExpr:
    """Parse and type-check once. `metrics` maps stored metric names to units (a set: units unknown);
    `derived` names the profile's derived metrics, `parameters` its per-device parameters (name -> unit) and
    `conditions` the rule group's named conditions (name -> expression). `kind="number"` compiles a derived
    metric's formula."""
    stored = metrics if isinstance(metrics, Mapping) else dict.fromkeys(metrics, "")
    parser = _Parser(source, stored, derived or {}, parameters or {}, conditions or {})
    node = parser.parse()
    if node.kind != kind:
        wanted = "a condition" if kind == "bool" else "a number"
        raise ExprError(f"the expression must be {wanted}, but {node.text!r} is not", 1)
    return CompiledExpr(source, node.fn, frozenset(parser.used), tuple(parser.comparisons),
                        dict(parser.windows), node.unit, node.support)
