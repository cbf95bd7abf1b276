"""``--set key=value`` overrides: applied after the file and validated exactly like file values."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from pytti_engine.errors import SceneError, SceneErrors
from pytti_engine.scene import Expr, PerceptorSpec, Scene, load_scene_text

from .conftest import MINIMAL

LoadFn = Callable[..., Scene]

BASE = "perceptors: [{model: ViT-B-32, pretrained: openai}]\n" + MINIMAL


@pytest.mark.parametrize(
    ("override", "check"),
    [
        ("steps_per_frame=20", lambda s: s.steps_per_frame == 20),
        ("fps=24.5", lambda s: s.fps == 24.5),
        ("title=My render", lambda s: s.title == "My render"),
        ("title=", lambda s: s.title is None),
        ("animation=2d", lambda s: s.animation == "2d"),
        ("animation=off", lambda s: s.animation == "off"),
        (
            "translate_x=10*sin(t)",
            lambda s: s.translate_x == Expr.constant(0) or s.translate_x.source == "10*sin(t)",
        ),
        ("zoom=0:(1), 10:(2)", lambda s: s.zoom.source == "0:(1), 10:(2)"),
        (
            "perceptors.0.model=ViT-B-16",
            lambda s: s.perceptors[0] == PerceptorSpec(model="ViT-B-16", pretrained="openai"),
        ),
        ("perceptors.1={model: RN50}", lambda s: s.perceptors[1] == PerceptorSpec(model="RN50")),
        ("perceptors=[{model: RN50}]", lambda s: s.perceptors == (PerceptorSpec(model="RN50"),)),
        ("output.crf=30", lambda s: s.output.crf == 30),
        ("scenes.0.frames=7", lambda s: s.scenes[0].frames == 7),
        ("scenes.0.prompts=x:2 | y", lambda s: [p.text for p in s.scenes[0].prompts] == ["x", "y"]),
    ],
)
def test_overrides_apply(override: str, check: Callable[[Scene], bool]) -> None:
    assert check(load_scene_text(BASE, overrides=[override]))


def test_overrides_apply_in_order() -> None:
    scene = load_scene_text(BASE, overrides=["seed=1", "seed=2"])
    assert scene.seed == 2


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (
            ["steps_per_frame=-1"],
            "<--set>:1:17: steps_per_frame: Input should be greater than or equal to 0 (got -1)",
        ),
        (
            ["steps_per_frame=abc"],
            "<--set>:1:17: steps_per_frame: Input should be a valid integer (got 'abc')",
        ),
        (["seed=1", "widht=5"], "<--set>:2:1: unknown key 'widht' (did you mean 'width'?)"),
        (
            ["perceptors.0.modle=x"],
            "<--set>:1:1: unknown key 'modle' (did you mean 'model'?) (in 'perceptors.0')",
        ),
        (
            ["perceptors.3.model=x"],
            "<--set>:1:1: perceptors.3.model: no list item perceptors.3 (the list has 1 items)",
        ),
        (["width"], "<--set>:1:1: expected key=value, got 'width'"),
        (["=5"], "<--set>:1:1: expected key=value"),
        (["a..b=5"], "<--set>:1:1: invalid key 'a..b'"),
        (["width.x=5"], "<--set>:1:1: width: Input should be a valid integer"),
        (
            ["scenes.0.frames.x=5"],
            "<--set>:1:1: scenes.0.frames.x: 'scenes.0.frames' is not a mapping or list",
        ),
        (["outputs.crf=5"], "<--set>:1:1: unknown key 'outputs' (did you mean 'output'?)"),
        (["translate_x=sin(tt)"], "<--set>:1:17: translate_x: unknown name 'tt'"),
        (["scenes.0.prompts=a:1:2:3"], "<--set>:1:23: scenes.0.prompts: too many ':'"),
        (["width=[1"], "<--set>:1:"),
    ],
)
def test_override_errors_are_named_set(overrides: list[str], expected: str) -> None:
    with pytest.raises(SceneError) as info:
        load_scene_text(BASE, overrides=overrides)
    first = info.value.errors[0] if isinstance(info.value, SceneErrors) else info.value
    assert str(first).startswith(expected), str(info.value)


def test_file_and_override_errors_are_reported_together() -> None:
    with pytest.raises(SceneErrors) as info:
        load_scene_text("width: 5\n" + BASE, name="s.yaml", overrides=["height=3"])
    assert [str(e).split(": ")[0] for e in info.value.errors] == ["<--set>:1:8", "s.yaml:1:8"]
