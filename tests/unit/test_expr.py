import math

import numpy as np
import pytest

from gateway.engine.expr import ExprError, MappingContext, compile_expr

METRICS = {"a", "b", "c"}
NAN = math.nan


def context(columns: dict[str, list[float]]) -> MappingContext:
    return MappingContext({k: np.array(v, dtype=np.float64) for k, v in columns.items()})


def run(source: str, **columns: list[float]) -> list[float]:
    size = len(next(iter(columns.values())))
    return np.broadcast_to(compile_expr(source, METRICS).evaluate(context(columns)), (size,)).tolist()


def holds(source: str, **columns: list[float]) -> list[bool]:
    size = len(next(iter(columns.values())))
    return np.broadcast_to(compile_expr(source, METRICS).holds(context(columns)), (size,)).tolist()


def test_comparison_over_a_batch() -> None:
    assert holds("a > 2", a=[1, 2, 3]) == [False, False, True]


def test_precedence_and_arithmetic() -> None:
    assert holds("a + b * 2 >= 7", a=[1, 3], b=[3, 1]) == [True, False]
    assert holds("(a + b) * 2 == 8", a=[1, 3], b=[3, 1]) == [True, True]
    assert holds("-a < 0", a=[1, -1]) == [True, False]
    assert holds("a / b > 1", a=[4, 1], b=[2, 2]) == [True, False]


def test_a_division_by_a_zero_value_is_unknown_and_never_fires() -> None:
    """`a / b > 1` fired wherever b was 0 (inf > 1)."""
    assert holds("a / b > 1", a=[4, 4, -4], b=[0, 2, 0]) == [False, True, False]
    assert holds("not (a / b > 1)", a=[4, 4], b=[0, 2]) == [False, False]


def test_functions() -> None:
    assert holds("abs(a) > 2", a=[-3, 1]) == [True, False]
    assert holds("clamp(a, 0, 10) == 10", a=[50, 5]) == [True, False]


def test_missing_is_a_known_condition() -> None:
    assert holds("missing(a)", a=[NAN, 1.0]) == [True, False]
    assert holds("b > 1 and missing(a)", a=[NAN, NAN, 2], b=[2, 0, 2]) == [True, False, False]
    with pytest.raises(ExprError, match="missing\\(\\) takes one metric name"):
        compile_expr("missing(3) and a > 1", METRICS)


def test_and_or_not() -> None:
    assert holds("a > 0 and b > 0", a=[1, 1, 0], b=[1, 0, 1]) == [True, False, False]
    assert holds("a > 0 or b > 0", a=[1, 0, 0], b=[0, 1, 0]) == [True, True, False]
    assert holds("not a > 0", a=[1, 0]) == [False, True]


def test_missing_value_is_unknown_never_true() -> None:
    # Three-valued logic: a missing metric must not make a negated condition fire.
    assert holds("not a > 5", a=[NAN]) == [False]
    assert holds("a > 5 or b > 5", a=[NAN, NAN], b=[6, 1]) == [True, False]
    assert holds("a > 5 and b > 5", a=[NAN], b=[1]) == [False]
    values = run("a > 5 and b > 5", a=[NAN, NAN], b=[1, 9])
    assert values[0] == 0.0 and math.isnan(values[1])


def test_comparisons_are_recorded_for_evidence() -> None:
    compiled = compile_expr("a > 3 and b <= c * 2", METRICS)
    assert [(c.left_text, c.op, c.right_text) for c in compiled.comparisons] == [("a", ">", "3"), ("b", "<=", "c * 2")]
    assert compiled.metrics == {"a", "b", "c"}


@pytest.mark.parametrize(
    ("source", "message", "column"),
    [
        ("a >", "unexpected 'end of expression'", 4),
        ("a > 1 and", "unexpected 'end of expression'", 10),
        ("zz > 1", "unknown metric 'zz'", 1),
        ("a > 1 and b", "'and' needs a condition", 7),
        ("a + (b > 1) > 0", "'+' needs a number", 3),
        ("a", "must be a condition", 1),
        ("a > 1 > 0", "comparisons do not chain", 7),
        ("foo(a) > 1", "unknown function 'foo'", 1),
        ("abs(a, b) > 1", "abs() takes 1 argument", 1),
        ("a > 1 $", "unexpected character '$'", 7),
        ("(a > 1", "expected ')'", 7),
        ("__import__('os') > 1", "unexpected character \"'\"", 12),
        ("__import__(a) > 1", "unknown function '__import__'", 1),
        ("a / 0 > 1", "division by zero", 3),
        ("b + a / 0.0 > 1", "division by zero", 7),
    ],
)
def test_errors_name_the_problem_and_column(source: str, message: str, column: int) -> None:
    with pytest.raises(ExprError) as info:
        compile_expr(source, METRICS)
    assert message in info.value.message
    assert info.value.column == column


# --- windows, durations and units -----------------------------------------------------------------------------

UNITS = {"pressure": "kPa", "temp": "degC", "on": "bool"}


def windowed(source: str, ts: list[list[float]], values: list[list[float]], now: list[float]) -> list[float]:
    compiled = compile_expr(source, UNITS)
    ts_array, value_array = np.array(ts, dtype=np.float64), np.array(values, dtype=np.float64)
    ctx = MappingContext({"temp": value_array[:, -1], "on": value_array[:, -1], "pressure": value_array[:, -1]},
                         windows={name: (ts_array, value_array) for name in UNITS}, now=np.array(now))
    return np.broadcast_to(compiled.evaluate(ctx), (len(ts),)).tolist()


# two devices; the second has a missing sample (NaN) and an older one outside a 60 s window
TS = [[0, 10, 20, 30, 40], [-100, 10, 20, 30, 40]]
VALUES = [[1, 3, 2, 5, 4], [50, 2, NAN, 2, 8]]


@pytest.mark.parametrize(("function", "expected"), [
    ("avg", [3.0, 4.0]), ("min", [1.0, 2.0]), ("max", [5.0, 8.0]), ("sum", [15.0, 12.0]), ("count", [5.0, 3.0]),
    ("last", [4.0, 8.0]), ("delta", [3.0, 6.0]), ("rate", [3 / 40, 6 / 30]), ("changes", [4.0, 1.0]),
    ("increases_over_time", [2.0, 1.0]),
])
def test_window_functions(function: str, expected: list[float]) -> None:
    result = windowed(f"{function}(temp, 60s) > -1000", TS, VALUES, now=[40, 40])
    assert result == [1.0, 1.0]
    compiled = compile_expr(f"{function}(temp, 1m) > -1000", UNITS)
    [comparison] = compiled.comparisons
    ts_array, value_array = np.array(TS, dtype=np.float64), np.array(VALUES, dtype=np.float64)
    ctx = MappingContext({}, windows={"temp": (ts_array, value_array)}, now=np.array([40.0, 40.0]))
    assert comparison.left(ctx).tolist() == pytest.approx(expected)
    assert compiled.windows == ({} if function == "last" else {"temp": 60.0})  # last() reads no window


def test_stddev_and_empty_window() -> None:
    compiled = compile_expr("stddev(temp, 15s) > 0", UNITS)
    [comparison] = compiled.comparisons
    ctx = MappingContext({}, windows={"temp": (np.array(TS, dtype=np.float64), np.array(VALUES, dtype=np.float64))},
                         now=np.array([40.0, 400.0]))
    result = comparison.left(ctx)
    assert result[0] == pytest.approx(0.5)  # samples 5 and 4 within 15 s
    assert math.isnan(result[1])  # nothing within 15 s of t=400: unknown, never a fake zero


def test_units_on_literals_are_checked() -> None:
    compile_expr("pressure > 3800 kPa and temp < 5 degC", UNITS)
    with pytest.raises(ExprError, match="wrong unit: pressure is in kPa, not degC"):
        compile_expr("pressure > 3800 degC", UNITS)
    with pytest.raises(ExprError, match="wrong unit: avg\\(temp, 5m\\) is in degC, not kPa"):
        compile_expr("avg(temp, 5m) > 10 kPa", UNITS)
    compile_expr("increases_over_time(on, 1h) > 10 count", UNITS)


def test_window_function_arguments() -> None:
    with pytest.raises(ExprError, match="needs a duration such as 10m"):
        compile_expr("avg(temp, 10) > 1", UNITS)
    with pytest.raises(ExprError, match="needs a reported metric"):
        compile_expr("avg(temp + 1, 10m) > 1", UNITS)
    assert compile_expr("rate(pressure, 90s) > 0 and count(temp, 1h) >= 3", UNITS).windows == {
        "pressure": 90.0, "temp": 3600.0}


def test_durations_are_seconds() -> None:
    assert run("a < 2m", a=[119, 121]) == [1.0, 0.0]
    assert run("a == 1h30m", a=[5400, 5401]) == [1.0, 0.0]
    assert run("a == 250ms", a=[0.25]) == [1.0]


def test_changes_of_temperatures_are_differences() -> None:
    compile_expr("delta(temp, 10m) > 5 K and stddev(temp, 10m) < 1 K", UNITS)
    with pytest.raises(ExprError, match="is in K, not degC"):
        compile_expr("delta(temp, 10m) > 5 degC", UNITS)


def test_and_or_give_the_same_three_valued_result_when_the_left_side_decides_every_row() -> None:
    # the right side is skipped where the left decides (false for `and`, true for `or`), with the same answer
    assert run("a > 0 and b > 0", a=[-1, -2], b=[NAN, 5]) == [0.0, 0.0]
    assert run("a > 0 or b > 0", a=[1, 2], b=[NAN, -5]) == [1.0, 1.0]
    mixed = run("a > 0 and b > 0", a=[-1, 1], b=[NAN, NAN])
    assert mixed[0] == 0.0 and math.isnan(mixed[1])
    unknown_left = run("a > 0 or b > 0", a=[NAN, NAN], b=[1, -1])
    assert unknown_left[0] == 1.0 and math.isnan(unknown_left[1])
