"""The whitelisted expression compiler and keyframe schedules."""

from __future__ import annotations

import math
import pickle
import time

import pytest

from pytti_engine.scene.expr import Expr, ExprError, ExprEvalError, compile_value


def env(t: float = 0.0, fps: float = 12.0, **extra: float) -> dict[str, float]:
    frame = t * fps
    return {"t": t, "frame": frame, "scene_t": t, "scene_frame": frame, "fps": fps, **extra}


@pytest.mark.parametrize(
    ("text", "t", "expected"),
    [
        ("3", 0.0, 3.0),
        ("-1.5", 0.0, -1.5),
        ("1_000", 0.0, 1000.0),
        ("t", 2.0, 2.0),
        ("frame", 2.0, 24.0),
        ("2 + sin(t)", 0.0, 2.0),
        ("2 + sin(t)", math.pi / 2, 3.0),
        ("10 * t ** 2 % 7", 1.0, 3.0),
        ("7 // 2", 0.0, 3.0),
        ("2 ** -1", 0.0, 0.5),
        ("pi", 0.0, math.pi),
        ("tau / 2 - pi", 0.0, 0.0),
        ("e", 0.0, math.e),
        ("min(t, 1, 2)", 5.0, 1.0),
        ("max(t, 1)", 5.0, 5.0),
        ("abs(-t)", 3.0, 3.0),
        ("clamp(t, 0, 1)", 5.0, 1.0),
        ("clamp(t, 0, 1)", -5.0, 0.0),
        ("1 if t > 2 else -1", 3.0, 1.0),
        ("1 if t > 2 else -1", 1.0, -1.0),
        ("(t > 1) * 5", 2.0, 5.0),
        ("0 < t < 1", 0.5, 1.0),
        ("t > 1 and 7", 2.0, 7.0),
        ("t > 1 or 7", 0.0, 7.0),
        ("not t", 0.0, 1.0),
        ("round(t)", 2.6, 3.0),
        ("floor(t) + ceil(t)", 2.5, 5.0),
        ("atan2(1, 1) * 4", 0.0, math.pi),
        ("sign(-t)", 2.0, -1.0),
        ("radians(180)", 0.0, math.pi),
        ("log(8, 2)", 0.0, 3.0),
        ("pow(2, t)", 3.0, 8.0),
        ("  \n t + 1", 1.0, 2.0),
        ("scene_t * fps", 1.0, 12.0),
    ],
)
def test_expression_values(text: str, t: float, expected: float) -> None:
    assert compile_value(text).evaluate(env(t)) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("text", "message", "offset"),
    [
        ("", "empty expression", 0),
        ("2 +", "invalid expression", 3),
        ("t.real", "attribute access", 0),
        ("__import__('os')", "unknown function '__import__'", 0),
        ("().__class__.__bases__", "attribute access", 0),
        ("(lambda: 1)()", "only calls of named math functions", 0),
        ("lambda: 1", "lambda not allowed", 0),
        ("[x for x in (1, 2)]", "comprehensions not allowed", 0),
        ("(x for x in (1,))", "comprehensions not allowed", 0),
        ("{1: 2}", "dicts not allowed", 0),
        ("'abc'", "only numbers are allowed", 0),
        ("t[0]", "indexing", 0),
        ("(y := 2)", "assignment", 1),
        ("1 + foo", "unknown name 'foo'", 4),
        ("1 + tt", "did you mean 't'", 4),
        ("sinn(t)", "unknown function 'sinn' (did you mean 'sin'?)", 0),
        ("sin", "'sin' is a function", 0),
        ("sin(t, 1)", "sin() takes 1 arguments, got 2", 0),
        ("clamp(t)", "clamp() takes 3 arguments, got 1", 0),
        ("sin(x=t)", "takes no keyword arguments", 0),
        ("9**9**9", "number too large", 0),
        ("1e999", "number too large", 0),
        ("10 ** 400.5", "number too large", 0),
        ("1 / 0", "division by zero", 0),
        ("sqrt(-1)", "math error", 0),
        ("~t", "'~' not allowed", 0),
        ("t | 1", "BitOr not allowed", 0),
        ("t is 1", "comparison Is not allowed", 0),
        ("True", "only numbers are allowed", 0),
        ("1j", "only numbers are allowed", 0),
        ("x" * 2001, "too long", 0),
        ("+".join(["t"] * 300), "too complex", 0),
        ("(" * 300 + "1" + ")" * 300, "too many nested parentheses", 200),
        ("9" * 1999, "number too large", 0),
        ("t\x00", "invalid expression: source code string cannot contain null bytes", 2),
        ("'\\d' + 1", "only numbers are allowed", 0),
    ],
)
def test_rejected_expressions(text: str, message: str, offset: int) -> None:
    with pytest.raises(ExprError) as info:
        compile_value(text)
    assert message in info.value.message
    assert info.value.offset == offset


def test_sandbox_escapes_are_rejected_quickly() -> None:
    attacks = [
        "__import__('os').system('true')",
        "().__class__.__base__.__subclasses__()",
        "[c for c in ().__class__.__base__.__subclasses__()]",
        "(lambda f: f(f))(lambda f: f(f))",
        "9**9**9**9",
        "getattr(t, '__class__')",
        "open('/etc/passwd')",
        "eval('1')",
        "globals()",
        "__builtins__",
        "t.__globals__",
        "exp(exp(exp(t)))",
    ]
    start = time.process_time()
    for text in attacks:
        try:
            compile_value(text).evaluate(env(50.0))
        except (ExprError, ExprEvalError):
            continue
        pytest.fail(f"{text!r} was accepted")
    # CPU time, generous for a busy 2-core machine (~0.05 s idle): a runaway exp() tower would take far longer
    assert time.process_time() - start < 2.0


@pytest.mark.parametrize(
    ("text", "t", "error"),
    [
        ("1 / (t - 1)", 1.0, "division by zero"),
        ("sqrt(t - 2)", 1.0, "math error"),
        ("exp(t * 1000)", 1.0, "result too large"),
        ("t ** 1e6", 2.0, "result too large"),
        ("(t * 1e300) * 1e300", 1.0, "not a finite number"),
        ("log(t)", 0.0, "math error"),
        ("t % 0", 1.0, "division by zero"),
    ],
)
def test_evaluation_errors(text: str, t: float, error: str) -> None:
    expr = compile_value(text)
    with pytest.raises(ExprEvalError, match=error):
        expr.evaluate(env(t))


def test_constants_are_folded() -> None:
    expr = compile_value("2 * pi + sin(0)")
    assert expr.is_constant
    assert expr.value == pytest.approx(2 * math.pi)
    assert expr.names == frozenset()
    varying = compile_value("t * 2 + scene_frame")
    assert not varying.is_constant
    assert varying.names == {"t", "scene_frame"}
    with pytest.raises(ValueError, match="not constant"):
        _ = varying.value


def test_extra_names_such_as_audio_bands() -> None:
    expr = compile_value("fLo_prev * 2", names={"t", "fLo_prev"})
    assert expr.evaluate({"fLo_prev": 0.25}) == 0.5
    with pytest.raises(ExprError, match="unknown name 'fLo_prev'"):
        compile_value("fLo_prev * 2")


def test_expr_is_immutable_hashable_and_picklable() -> None:
    expr = compile_value("1 + sin(t)")
    with pytest.raises(AttributeError):
        expr.source = "2"  # type: ignore[misc]
    assert expr == compile_value(" 1 + sin(t) ")
    assert len({expr, compile_value("1 + sin(t)")}) == 1
    clone = pickle.loads(pickle.dumps(expr))
    assert clone == expr and clone.evaluate(env(1.0)) == expr.evaluate(env(1.0))
    assert pickle.loads(pickle.dumps(Expr.constant(3))).value == 3.0
    assert Expr.constant(2.0) == compile_value("2")
    assert Expr.constant(2).to_json() == 2.0 and expr.to_json() == "1 + sin(t)"


# --- keyframes -------------------------------------------------------------------------------------------

SCHEDULE = "0:(1.0), 24:(1.5), 48:(0.5)"


@pytest.mark.parametrize(
    ("interpolation", "frame", "expected"),
    [
        ("linear", 0, 1.0),
        ("linear", 12, 1.25),
        ("linear", 24, 1.5),
        ("linear", 36, 1.0),
        ("linear", 48, 0.5),
        ("linear", 100, 0.5),
        ("step", 12, 1.0),
        ("step", 47, 1.5),
        ("smooth", 6, 1.0 + 0.5 * (0.25**2 * (3 - 0.5))),
        ("smooth", 12, 1.25),
        ("cubic", 24, 1.5),
        # Catmull-Rom on the first segment duplicates the first point: p0 = p1 = 1, p2 = 1.5, p3 = 0.5.
        ("cubic", 12, 0.5 * (2 + 0.5 * 0.5 + (2 - 5 + 6 - 0.5) * 0.25 + (-1 + 3 - 4.5 + 0.5) * 0.125)),
    ],
)
def test_keyframe_interpolation(interpolation: str, frame: int, expected: float) -> None:
    expr = compile_value(SCHEDULE)
    value = expr.evaluate({"frame": float(frame), "t": frame / 12}, interpolation)  # type: ignore[arg-type]
    assert value == pytest.approx(expected)


def test_keyframes_hold_before_the_first_and_evaluate_live_expressions() -> None:
    expr = compile_value("10:(2), 20:(sin(t) * 0 + frame)")
    assert expr.evaluate({"frame": 0.0, "t": 0.0}) == 2.0
    assert expr.evaluate({"frame": 15.0, "t": 1.25}) == pytest.approx(2 + (15 - 2) * 0.5)
    assert expr.evaluate({"frame": 30.0, "t": 2.5}) == 30.0
    assert "frame" in expr.names and "t" in expr.names


def test_keyframes_in_parentheses_and_single() -> None:
    assert compile_value("(0:(1), 10:(3))").evaluate({"frame": 5.0}) == 2.0
    assert compile_value("5: (4)").evaluate({"frame": 0.0}) == 4.0


@pytest.mark.parametrize(
    ("text", "message", "offset"),
    [
        ("0:(1), 0:(2)", "duplicate keyframe", 7),
        ("10:(1), 5:(2)", "keyframe numbers must increase", 8),
        ("0:(1) 5:(2)", "expected ',' between keyframes", 6),
        ("0:(1), 5:(x)", "unknown name 'x'", 10),
        ("0:(1), 2.5:(2)", "keyframe numbers are frame numbers", 7),
        ("0:(1), 5:2", "expected '(' after 'FRAME:'", 9),
        ("0:(1), 5:(2", "unclosed '('", 9),
        ("0:(1), x", "expected a keyframe", 7),
        ("0:(9**9**9)", "number too large", 3),
    ],
)
def test_keyframe_errors(text: str, message: str, offset: int) -> None:
    with pytest.raises(ExprError) as info:
        compile_value(text)
    assert message in info.value.message
    assert info.value.offset == offset


def test_parseq_sized_schedules_paste_in() -> None:
    schedule = ", ".join(f"{i}:({1 + 0.001 * i:.6f})" for i in range(10_000)) + ","
    start = time.process_time()
    expr = compile_value(schedule)
    assert time.process_time() - start < 2.0  # linear (~0.1 s idle); a quadratic parse takes minutes
    assert expr.evaluate({"frame": 5000.5}) == pytest.approx(6.0005)
    with pytest.raises(ExprError, match="keyframe schedule is too long"):
        compile_value("0:(1)," + " " * 2_000_000)
