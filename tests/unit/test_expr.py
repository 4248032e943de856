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
    with pytest.raises(ExprError, match="wrong unit: '>' compares pressure \\(in kPa\\) with 3800 degC"):
        compile_expr("pressure > 3800 degC", UNITS)
    with pytest.raises(ExprError, match="compares avg\\(temp, 5m\\) \\(in degC\\) with 10 kPa"):
        compile_expr("avg(temp, 5m) > 10 kPa", UNITS)
    compile_expr("increases_over_time(on, 1h) > 10 count", UNITS)


def test_window_function_arguments() -> None:
    with pytest.raises(ExprError, match="needs a duration such as 10m"):
        compile_expr("avg(temp, 10) > 1", UNITS)
    with pytest.raises(ExprError, match="window functions do not nest"):
        compile_expr("avg(delta(temp, 1m), 10m) > 1", UNITS)
    with pytest.raises(ExprError, match="fraction\\(\\) needs a condition"):
        compile_expr("fraction(temp, 10m) > 0.5", UNITS)
    with pytest.raises(ExprError, match="takes 2 arguments"):
        compile_expr("avg(temp, 10m, 5m) > 1", UNITS)
    assert compile_expr("rate(pressure, 90s) > 0 and count(temp, 1h) >= 3", UNITS).windows == {
        "pressure": 90.0, "temp": 3600.0}


def test_durations_are_seconds() -> None:
    assert run("a < 2m", a=[119, 121]) == [1.0, 0.0]
    assert run("a == 1h30m", a=[5400, 5401]) == [1.0, 0.0]
    assert run("a == 250ms", a=[0.25]) == [1.0]


def test_changes_of_temperatures_are_differences() -> None:
    compile_expr("delta(temp, 10m) > 5 K and stddev(temp, 10m) < 1 K", UNITS)
    with pytest.raises(ExprError, match="delta\\(temp, 10m\\) \\(in K\\) with 5 degC"):
        compile_expr("delta(temp, 10m) > 5 degC", UNITS)


def test_and_or_give_the_same_three_valued_result_when_the_left_side_decides_every_row() -> None:
    # the right side is skipped where the left decides (false for `and`, true for `or`), with the same answer
    assert run("a > 0 and b > 0", a=[-1, -2], b=[NAN, 5]) == [0.0, 0.0]
    assert run("a > 0 or b > 0", a=[1, 2], b=[NAN, -5]) == [1.0, 1.0]
    mixed = run("a > 0 and b > 0", a=[-1, 1], b=[NAN, NAN])
    assert mixed[0] == 0.0 and math.isnan(mixed[1])
    unknown_left = run("a > 0 or b > 0", a=[NAN, NAN], b=[1, -1])
    assert unknown_left[0] == 1.0 and math.isnan(unknown_left[1])


# --- evidence, expressions over windows, conditionals, units through arithmetic, parameters, conditions ---------

def held(source: str, **columns: list[float]) -> list[list[str]]:
    """For each row: the comparisons the expression's evidence names, as `text op` (op as it held)."""
    compiled = compile_expr(source, METRICS)
    size = len(next(iter(columns.values())))
    found = compiled.held(context(columns), np.ones(size, dtype=np.bool_))
    return [[f"{h.comparison.left_text} {h.op} {h.comparison.right_text}" for h in found if h.rows[i]]
            for i in range(size)]


def test_evidence_names_only_the_branches_that_held() -> None:
    assert held("a == 2 or a == 3", a=[2, 3]) == [["a == 2"], ["a == 3"]]
    assert held("(a > 1 and b > 1) or c > 1", a=[2, 2], b=[0, 2], c=[2, 0]) == [["c > 1"], ["a > 1", "b > 1"]]
    # under `not`, what counts is the comparison being false: it is named with its complement
    assert held("not (a > 5 or b > 5) and c > 1", a=[1], b=[2], c=[3]) == [["a <= 5", "b <= 5", "c > 1"]]
    assert held("a > 5 or b > 5", a=[1], b=[2]) == [[]]  # false: nothing held


def series_context(values: dict[str, list[list[float]]], ts: list[list[float]], now: list[float]) -> MappingContext:
    ts_array = np.array(ts, dtype=np.float64)
    return MappingContext({k: np.array(v, dtype=np.float64)[:, -1] for k, v in values.items()},
                          windows={k: (ts_array, np.array(v, dtype=np.float64)) for k, v in values.items()},
                          now=np.array(now, dtype=np.float64))


def left_of(source: str, ctx: MappingContext, units: dict[str, str] | None = None) -> list[float]:
    compiled = compile_expr(source, units or UNITS_AHU)
    return np.asarray(compiled.comparisons[-1].left(ctx), dtype=np.float64).tolist()


UNITS_AHU = {"supply": "degC", "mixed": "degC", "valve": "percent", "mode": "enum", "flow": "degF"}


def test_a_window_over_an_expression_evaluates_it_at_every_sample() -> None:
    ts = [[0, 60, 120, 180]]
    ctx = series_context({"supply": [[20, 22, 24, 26]], "mixed": [[18, NAN, 20, 21]]}, ts, now=[180])
    # mixed is carried forward at t=60 (18): residuals 2, 4, 4, 5
    assert left_of("avg(supply - mixed, 10m) > 1 K", ctx) == [3.75]
    assert left_of("max(supply - mixed, 2m) > 1 K", ctx) == [5.0]  # window (60, 180]: samples at 120 and 180


def test_changes_of_a_condition_count_its_switches() -> None:
    ctx = series_context({"valve": [[0, 5, 0, 0, 8, 9]]}, [[0, 60, 120, 180, 240, 300]], now=[300])
    assert left_of("changes(valve > 2, 1h) > 0", ctx) == [3.0]  # off -> on -> off -> on


def test_fraction_is_the_share_of_the_window_a_condition_held() -> None:
    ts = [[0, 600, 1200, 1800, 2400, 3000, 3600], [0, 600, 1200, 1800, 2400, 3000, 3600]]
    valve = [[9, 9, 0, 9, 9, 9, 9], [9, 9, 9, NAN, NAN, NAN, 9]]
    ctx = series_context({"valve": valve}, ts, now=[3600, 3600])
    # row 0: off from 1200 to 1800 of the last hour; row 1: the unreported values are carried forward
    assert left_of("fraction(valve > 2, 1h) >= 0.8", ctx) == pytest.approx([5 / 6, 1.0])
    assert left_of("fraction(valve > 2, 30m) >= 0.8", ctx) == pytest.approx([1.0, 1.0])


def test_fraction_does_not_count_a_gap_longer_than_a_sample_stands_for() -> None:
    from gateway.engine.expr import WindowView, _fraction
    ts = np.array([[0.0, 100.0, 1000.0]])
    view = WindowView(np.array([[1.0, 1.0, 1.0]]), ts, np.ones((1, 3), dtype=np.bool_), ordered=True,
                      start=np.array([0.0]), end=np.array([1000.0]), hold=np.array([150.0]))
    assert _fraction(view).tolist() == pytest.approx([(100 + 150) / 1000])


def test_pairwise_min_max_and_if() -> None:
    ctx = series_context({"supply": [[20], [30]], "mixed": [[25], [10]], "valve": [[50], [0]]}, [[0], [0]], [0, 0])
    assert left_of("min(supply, mixed) > 0 degC", ctx) == [20.0, 10.0]
    assert left_of("max(supply, mixed) > 0 degC", ctx) == [25.0, 30.0]
    assert left_of("if(valve > 2, supply, mixed) > 0 degC", ctx) == [20.0, 10.0]
    with pytest.raises(ExprError, match="if\\(\\) takes 3 arguments"):
        compile_expr("if(valve > 2, supply) > 1", UNITS_AHU)
    with pytest.raises(ExprError, match="needs a condition"):
        compile_expr("if(valve, supply, mixed) > 1", UNITS_AHU)
    with pytest.raises(ExprError, match="wrong unit: if\\(\\) chooses between supply \\(in degC\\) with valve"):
        compile_expr("if(valve > 2, supply, valve) > 1", UNITS_AHU)


def test_units_are_carried_through_arithmetic() -> None:
    compile_expr("supply - mixed > 2 K and (supply + mixed) / 2 > 10 degC and supply - 2 K > 5 degC", UNITS_AHU)
    with pytest.raises(ExprError, match="compares supply - mixed \\(in K\\) with 2 kPa"):
        compile_expr("supply - mixed > 2 kPa", UNITS_AHU)
    with pytest.raises(ExprError, match="'\\+' combines supply \\(in degC\\) with valve \\(in percent\\)"):
        compile_expr("supply + valve > 2", UNITS_AHU)
    with pytest.raises(ExprError, match="compares supply \\(in degC\\) with valve \\(in percent\\)"):
        compile_expr("supply > valve", UNITS_AHU)


def test_degf_is_converted_not_rejected() -> None:
    ctx = series_context({"flow": [[50, 59]]}, [[0, 60]], now=[60])
    assert left_of("delta(flow, 10m) > 4 K", ctx) == pytest.approx([5.0])  # 9 degF of change is 5 K
    compiled = compile_expr("flow > 10 degC", UNITS_AHU)  # the literal is converted to 50 degF
    assert compiled.comparisons[0].right_text == "50 degF"
    assert compiled.holds(ctx).tolist() == [True]


def test_parameters_are_per_device_values_with_units() -> None:
    compiled = compile_expr("supply - mixed > threshold", UNITS_AHU, parameters={"threshold": "K"})
    ctx = MappingContext({"supply": np.array([25.0, 25.0]), "mixed": np.array([20.0, 20.0]),
                          "threshold": np.array([2.0, 8.0])})
    assert compiled.holds(ctx).tolist() == [True, False]
    with pytest.raises(ExprError, match="compares supply \\(in degC\\) with threshold \\(in K\\)"):
        compile_expr("supply > threshold", UNITS_AHU, parameters={"threshold": "K"})


def test_named_conditions_are_compiled_in_place() -> None:
    conditions = {"heating": "valve > 2 and mode == 1", "heating_hard": "heating and valve > 90"}
    compiled = compile_expr("heating_hard and supply < 20 degC", UNITS_AHU, conditions=conditions)
    ctx = MappingContext({"valve": np.array([95.0, 50.0]), "mode": np.array([1.0, 1.0]),
                          "supply": np.array([15.0, 15.0])})
    assert compiled.holds(ctx).tolist() == [True, False]
    evidence = compiled.held(ctx, np.array([True, False]))
    assert [h.comparison.text for h in evidence] == ["valve > 2", "mode == 1", "valve > 90", "supply < 20 degC"]
    with pytest.raises(ExprError, match="in condition 'broken', column 15: unknown metric 'vlave'"):
        compile_expr("broken", UNITS_AHU, conditions={"broken": "valve > 0 and vlave > 1"})
    with pytest.raises(ExprError, match="condition 'loop' refers to itself"):
        compile_expr("loop", UNITS_AHU, conditions={"loop": "valve > 1 and loop"})
    with pytest.raises(ExprError, match="condition 'number' must be a condition"):
        compile_expr("number", UNITS_AHU, conditions={"number": "valve + 1"})


def test_a_degf_quantity_meeting_a_degc_one_is_converted() -> None:
    units = {"inside": "degC", "outside": "degF"}
    ctx = MappingContext({"inside": np.array([20.0, 20.0]), "outside": np.array([41.0, 95.0])})  # 5 and 35 degC
    assert compile_expr("inside - outside > 10 K", units).holds(ctx).tolist() == [True, False]
    assert compile_expr("min(inside, outside) < 10 degC", units).holds(ctx).tolist() == [True, False]
    assert compile_expr("outside > inside", units).holds(ctx).tolist() == [False, True]


def test_delta_and_rate_while_a_condition_holds_leave_out_what_happens_in_between() -> None:
    # heating at 0.1 K/s, a draw (flow) cools the tank by 5 K between t=20 and t=30, heating goes on after it
    ts = [[0, 10, 20, 30, 40, 50]]
    ctx = series_context({"temp": [[50, 51, 52, 47, 48, 49]], "flow": [[0, 0, 0, 6, 0, 0]],
                          "on": [[1, 1, 1, 1, 1, 0]]}, ts, now=[50])
    units = {"temp": "degC", "flow": "lpm", "on": "bool"}
    # counted: (0,10) and (10,20); not (20,30) nor (30,40) (the draw at 30), nor (40,50) (off at 50)
    assert left_of("rate(temp, 1m, on == 1 and flow < 0.5) > 0", ctx, units) == pytest.approx([0.1])
    assert left_of("delta(temp, 1m, on == 1 and flow < 0.5) > 0 K", ctx, units) == pytest.approx([2.0])
    assert left_of("delta(temp, 1m) > 0 K", ctx, units) == pytest.approx([-1.0])  # the plain change, draw and all
    nothing = series_context({"temp": [[50, 51]], "flow": [[6, 6]], "on": [[1, 1]]}, [[0, 10]], now=[10])
    assert math.isnan(left_of("rate(temp, 1m, flow < 0.5) > 0", nothing, units)[0])  # no pair: unknown
    with pytest.raises(ExprError, match="needs a number and a condition"):
        compile_expr("rate(temp, 1m, flow) > 0", units)
