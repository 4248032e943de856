import math

import numpy as np
import pytest

from gateway.engine.expr import ExprError, compile_expr

METRICS = {"a", "b", "c"}
NAN = math.nan


def run(source: str, **columns: list[float]) -> list[float]:
    compiled = compile_expr(source, METRICS)
    return compiled.evaluate({k: np.array(v, dtype=np.float64) for k, v in columns.items()}).tolist()


def holds(source: str, **columns: list[float]) -> list[bool]:
    compiled = compile_expr(source, METRICS)
    return compiled.holds({k: np.array(v, dtype=np.float64) for k, v in columns.items()}).tolist()


def test_comparison_over_a_batch() -> None:
    assert holds("a > 2", a=[1, 2, 3]) == [False, False, True]


def test_precedence_and_arithmetic() -> None:
    assert holds("a + b * 2 >= 7", a=[1, 3], b=[3, 1]) == [True, False]
    assert holds("(a + b) * 2 == 8", a=[1, 3], b=[3, 1]) == [True, True]
    assert holds("-a < 0", a=[1, -1]) == [True, False]
    assert holds("a / b > 1", a=[4, 1], b=[2, 2]) == [True, False]


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
    ],
)
def test_errors_name_the_problem_and_column(source: str, message: str, column: int) -> None:
    with pytest.raises(ExprError) as info:
        compile_expr(source, METRICS)
    assert message in info.value.message
    assert info.value.column == column
