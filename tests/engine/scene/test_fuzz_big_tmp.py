"""Fuzzing: any input ends in a valid result or a clean SceneError/PromptError/ExprError, quickly."""

from __future__ import annotations

import math
import string
from datetime import timedelta
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pytti_engine.errors import SceneError
from pytti_engine.scene import (
    ExprError,
    ExprEvalError,
    Plan,
    PromptError,
    Scene,
    build_plan,
    compile_value,
    load_scene_text,
    parse_prompts,
)
from pytti_engine.scene.pytti_import import convert_pytti_text

FUZZ = settings(
    max_examples=5000,
    deadline=timedelta(milliseconds=1000),
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=False,
)

DSL_CHARS = string.ascii_letters[:8] + string.digits[:4] + " :|_[]()-.\\*+/tl,"
EXPR_CHARS = "t frame 0123456789.+-*/%()<>=, sinmaxclpe_if else and or not ** [] : \\"


def _env(t: float) -> dict[str, float]:
    return {"t": t, "frame": t * 12, "scene_t": t, "scene_frame": t * 12, "fps": 12.0}


@FUZZ
@given(st.text(alphabet=DSL_CHARS, max_size=40))
def test_prompt_parser_never_crashes_and_round_trips(text: str) -> None:
    try:
        specs = parse_prompts(text, check_files=False)
    except PromptError as e:
        assert 0 <= e.offset <= len(text) and e.message
        return
    assert specs
    again = parse_prompts(" | ".join(s.to_source() for s in specs), check_files=False)
    assert again == specs


@FUZZ
@given(st.text(max_size=30))
def test_prompt_parser_on_any_unicode(text: str) -> None:
    try:
        parse_prompts(text, check_files=False)
    except PromptError as e:
        assert 0 <= e.offset <= len(text)


def _expressions() -> st.SearchStrategy[str]:
    atoms = st.sampled_from(["t", "frame", "scene_t", "pi", "0", "1", "2.5", "1e308", "-3", "9", "tt", "__x"])

    def extend(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        binary = st.tuples(
            inner, st.sampled_from(["+", "-", "*", "/", "//", "%", "**", "<", "==", " and ", " or "]), inner
        )
        call = st.tuples(
            st.sampled_from(["sin", "sqrt", "log", "exp", "min", "max", "clamp", "abs", "foo"]),
            st.lists(inner, max_size=3),
        )
        return st.one_of(
            binary.map(lambda p: f"({p[0]}{p[1]}{p[2]})"),
            call.map(lambda p: f"{p[0]}({', '.join(p[1])})"),
            st.tuples(inner, inner, inner).map(lambda p: f"({p[0]} if {p[1]} else {p[2]})"),
            inner.map(lambda s: f"-{s}"),
        )

    return st.recursive(atoms, extend, max_leaves=12)


@FUZZ
@given(st.one_of(_expressions(), st.text(alphabet=EXPR_CHARS, max_size=40)), st.floats(-100, 100))
def test_expressions_compile_and_evaluate_or_fail_cleanly(text: str, t: float) -> None:
    try:
        expr = compile_value(text)
    except ExprError as e:
        assert 0 <= e.offset <= len(text)
        return
    try:
        value = expr.evaluate(_env(t))
    except ExprEvalError:
        return
    assert math.isfinite(value)


SCENE_KEYS = [*Scene.model_fields, "widht", "frames", "prompts", "steps_per_scene"]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(alphabet=DSL_CHARS, max_size=12),
    st.sampled_from(
        [
            "off",
            "2d",
            "wrap",
            "sin(t)",
            "0:(1), 5:(2)",
            "ViT-B-32",
            "a:1_l",
            "[x.png]",
            "${width}",
            "${seed}",
            "???",
        ]
    ),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(SCENE_KEYS), inner, max_size=3)
    ),
    max_leaves=8,
)
stages = st.fixed_dictionaries(
    {"prompts": st.one_of(st.text(alphabet=DSL_CHARS, max_size=20), values)},
    optional={
        "frames": st.one_of(st.integers(-2, 40), values),
        "seconds": values,
        "transition_frames": st.integers(-1, 5),
    },
)
scenes = st.fixed_dictionaries(
    {"scenes": st.one_of(st.lists(stages, max_size=3), values)},
    optional={k: values for k in SCENE_KEYS if k != "scenes"},
)


def _check_loaded(text: str) -> None:
    try:
        scene = load_scene_text(text)
    except SceneError as e:
        assert str(e).startswith("<scene>")
        return
    assert isinstance(scene, Scene)
    try:
        plan = build_plan(scene)
    except SceneError:
        return
    assert isinstance(plan, Plan) and len(plan.frames) == scene.total_frames


@settings(FUZZ, max_examples=500)
@given(scenes)
def test_loader_on_structured_scenes(data: dict[str, Any]) -> None:
    _check_loaded(yaml.safe_dump(data, allow_unicode=True))


@FUZZ
@given(st.text(alphabet=string.printable, max_size=80))
def test_loader_on_arbitrary_text(text: str) -> None:
    _check_loaded(text)


@FUZZ
@given(st.lists(st.text(alphabet=string.ascii_lowercase[:6] + "._=0129{}[]: ", max_size=16), max_size=3))
def test_overrides_never_crash(overrides: list[str]) -> None:
    try:
        load_scene_text("scenes: [{prompts: a, frames: 2}]\n", overrides=overrides)
    except SceneError as e:
        assert e.message


@settings(FUZZ, max_examples=500)
@given(
    st.dictionaries(
        st.sampled_from(
            [
                "scenes",
                "steps_per_scene",
                "steps_per_frame",
                "animation_mode",
                "zoom_x_2d",
                "width",
                "ViTB32",
                "seed",
                "interpolation_steps",
                "frames_per_second",
            ]
        ),
        values,
        max_size=6,
    )
)
def test_pytti_import_never_crashes(config: dict[str, Any]) -> None:
    try:
        text, warnings = convert_pytti_text(yaml.safe_dump(config))
    except SceneError:
        return
    assert isinstance(warnings, list) and text.startswith("#")
