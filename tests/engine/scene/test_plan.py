"""The per-frame plan: frame clock, scenes, transitions, motion, and evaluation errors."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from pytti_engine.errors import SceneError, SceneErrors
from pytti_engine.scene import (
    FramePlan,
    MaskValue,
    Plan,
    PromptValue,
    Scene,
    build_plan,
    load_scene,
    load_scene_text,
)

LoadFn = Callable[..., Scene]


def plan_of(text: str) -> Plan:
    return build_plan(load_scene_text(text))


def test_frame_clock_scene_lengths_and_time() -> None:
    plan = plan_of(
        """
        fps: 4
        scenes:
          - {prompts: a, frames: 3}
          - {prompts: b, seconds: 1.1}
          - {prompts: c, seconds: 0.01}
        """
    )
    assert plan.fps == 4.0
    assert [f.index for f in plan.frames] == list(range(1, 9))
    assert [f.scene_index for f in plan.frames] == [0, 0, 0, 1, 1, 1, 1, 2]  # 1.1 s * 4 = 4.4 -> 4; min 1
    assert [f.t for f in plan.frames] == [i / 4 for i in range(8)]
    assert [f.prompts[0].text for f in plan.frames] == ["a"] * 3 + ["b"] * 4 + ["c"]


def test_seconds_round_half_up() -> None:
    scene = load_scene_text("fps: 10\nscenes: [{prompts: a, seconds: 0.25}, {prompts: b, seconds: 0.35}]")
    assert scene.stage_frame_counts() == (3, 4)


def test_prompt_weights_and_stops_are_evaluated_per_frame() -> None:
    plan = plan_of(
        """
        fps: 2
        scenes:
          - prompts: "sky:1 + t:-0.5 * frame | sea:-scene_frame"
            frames: 3
        """
    )
    assert [(p.weight, p.stop) for p in plan.frames[2].prompts] == [(2.0, -1.0), (-2.0, None)]
    sky, sea = plan.frames[0].prompts
    assert sea == PromptValue("sea", -0.0, None)  # constant within a frame: no per-step values
    assert (sky.text, sky.weight, sky.stop) == ("sky", 1.0, -0.0)
    assert sky.per_step is not None and sky.per_step.weight is not None  # 1 + t moves every step (50/frame)
    assert sky.per_step.stop is None and sky.weight_at(1) == 1.0 and sky.weight_at(50) == 1.49


def test_scene_local_time_restarts_per_scene() -> None:
    plan = plan_of(
        "fps: 1\nscenes: [{prompts: 'a:scene_t', frames: 2}, {prompts: 'b:10 + scene_t', frames: 2}]"
    )
    assert [f.prompts[0].weight for f in plan.frames] == [0.0, 1.0, 10.0, 11.0]


def test_transition_blends_weights_from_the_previous_scene() -> None:
    plan = plan_of(
        """
        scenes:
          - {prompts: "old:2", frames: 2}
          - {prompts: "new:4", frames: 4, transition_frames: 3}
        """
    )
    third = plan.frames[2]  # first frame of scene 1: tau = 1/4
    assert third.scene_index == 1
    assert [(p.text, p.weight) for p in third.prompts] == [("new", 1.0), ("old", 1.5)]
    assert [(p.text, p.weight) for p in plan.frames[4].prompts] == [("new", 3.0), ("old", 0.5)]
    assert [(p.text, p.weight) for p in plan.frames[5].prompts] == [("new", 4.0)]


def test_prefix_and_suffix_are_concatenated_like_pytti_and_shared_prompts_do_not_fade() -> None:
    scene = load_scene_text(
        """
        scene_prefix: "oil painting | a painting of "
        scene_suffix: " | watermark:-1:-.9"
        scenes:
          - {prompts: "a dragon:2", frames: 1}
          - {prompts: "a castle", frames: 2, transition_frames: 1}
        """
    )
    texts = [[p.text for p in s.prompts] for s in scene.scenes]
    assert texts == [
        ["oil painting", "a painting of a dragon", "watermark"],
        ["oil painting", "a painting of a castle", "watermark"],
    ]
    frame = build_plan(scene).frames[1]
    assert [(p.text, p.weight) for p in frame.prompts] == [
        ("oil painting", 1.0),
        ("a painting of a castle", 0.5),
        ("watermark", -1.0),
        ("a painting of a dragon", 1.0),
    ]


def test_motion_is_resolved_for_2d_and_identity_when_off() -> None:
    text = """
        fps: 12
        animation: {mode}
        translate_x: "12 * t"
        translate_y: -2
        rotate_2d: "frame"
        zoom: "0:(1.0), 24:(1.5)"
        scenes: [{{prompts: a, frames: 25}}]
        """
    plan = plan_of(text.format(mode="2d"))
    f = plan.frames[12]
    assert (f.translate_x, f.translate_y, f.rotate_2d, f.zoom) == (12.0, -2.0, 12.0, 1.25)
    assert plan.frames[24].zoom == 1.5
    off = plan_of(text.format(mode="off"))
    assert {(f.translate_x, f.translate_y, f.rotate_2d, f.zoom) for f in off.frames} == {(0.0, 0.0, 0.0, 1.0)}


@pytest.mark.parametrize(
    ("interpolation", "expected"),
    [("linear", 1.25), ("step", 1.0), ("smooth", 1.25), ("cubic", 1.25)],
)
def test_keyframe_interpolation_option(interpolation: str, expected: float) -> None:
    plan = plan_of(
        f"""
        animation: 2d
        keyframe_interpolation: {interpolation}
        zoom: "0:(1.0), 24:(1.5)"
        scenes: [{{prompts: a, frames: 30}}]
        """
    )
    assert plan.frames[12].zoom == pytest.approx(expected)
    assert plan.frames[29].zoom == 1.5


def test_masks_and_image_prompts_reach_the_plan(tmp_path: object) -> None:
    plan = plan_of(
        """
        scenes:
          - prompts: "sky:2_l_0.25 + t | sea:1_water | [https://example.org/a.png]:0.5"
            frames: 1
        """
    )
    sky, sea, image = plan.frames[0].prompts
    assert sky.mask == MaskValue("position", "l", cutoff=0.25)
    assert sea.mask == MaskValue("text", "water")
    assert image.image == "https://example.org/a.png" and image.text == "[https://example.org/a.png]"


def test_evaluation_errors_name_the_line_column_and_frame() -> None:
    text = """\
fps: 1
animation: 2d
translate_x: "1 / (t - 2)"
zoom: "1 - t"
scenes:
  - prompts: "a:sqrt(3 - t) | b:log(t)"
    frames: 5
"""
    with pytest.raises(SceneErrors) as info:
        plan_of(text)
    messages = [str(e) for e in info.value.errors]
    assert messages == [
        "<scene>:3:15: translate_x: division by zero at frame 3 (t=2s) in '1 / (t - 2)'",
        "<scene>:4:8: zoom: must be > 0 (a scale factor per frame), got 0 at frame 2",
        "<scene>:6:17: prompt weight: math error (math domain error) at frame 4, step 50 (t=3.98s) in "
        "'sqrt(3 - t)'",  # weights move every step (50 per frame); the plan checks each frame's last step
        "<scene>:6:33: prompt weight: math error (math domain error) at frame 1 (t=0s) in 'log(t)'",
    ]


def test_single_evaluation_error_is_a_plain_scene_error() -> None:
    with pytest.raises(SceneError) as info:
        plan_of("scenes: [{prompts: 'a:1/(frame-1)', frames: 3}]")
    assert not isinstance(info.value, SceneErrors)
    assert info.value.line == 1 and info.value.col == 23


def test_plan_serializes_to_json() -> None:
    plan = plan_of("animation: 2d\nscenes: [{prompts: 'a:2_[https://x.org/m.png]:0.5', frames: 2}]")
    data = json.loads(plan.to_json())
    assert data["fps"] == 12.0 and len(data["frames"]) == 2
    frame = data["frames"][1]
    assert frame == {
        "index": 2,
        "t": 1 / 12,
        "scene_index": 0,
        "prompts": [
            {
                "text": "a",
                "weight": 2.0,
                "stop": 0.5,
                "image": None,
                "mask": {"kind": "image", "value": "https://x.org/m.png", "inverted": False, "cutoff": None},
            }
        ],
        "translate_x": 0.0,
        "translate_y": 0.0,
        "rotate_2d": 0.0,
        "zoom": 1.0,
    }
    assert isinstance(plan.frames[0], FramePlan) and plan.frames[0].to_dict()["index"] == 1


def test_ten_thousand_frames_with_a_dozen_expressions_validate_and_plan_in_under_a_second() -> None:
    text = """
        fps: 24
        animation: 2d
        translate_x: "10 * sin(t * 2 * pi / 5)"
        translate_y: "clamp(t - 3, -2, 2) if frame % 2 else -1"
        rotate_2d: "0:(0), 2400:(1.5), 7200:(sin(t)), 9999:(0)"
        zoom: "1 + 0.01 * cos(t) ** 2"
        scenes:
          - prompts: "a lighthouse:2 + sin(t) | storm:abs(cos(t)):0.1 * t % 1 | fog:-1:-.9"
            frames: 5000
          - prompts: "dawn:max(1, t / 100)_l_0.5 | calm sea:1 + scene_t / 60 | gulls:min(t, 3)"
            frames: 5000
            transition_frames: 240
        """
    start = time.process_time()  # CPU time: other processes on a busy CI machine do not count
    plan = plan_of(text)
    elapsed = time.process_time() - start
    assert len(plan.frames) == 10_000
    assert all(math.isfinite(f.zoom) and f.zoom > 0 for f in plan.frames)
    assert elapsed < 3.0, (
        f"validate + plan took {elapsed:.2f} s"
    )  # ~0.3 s idle; CPU time still grows under load


@pytest.mark.parametrize(
    "path", sorted((Path(__file__).resolve().parents[3] / "scenes").glob("*.yaml")), ids=lambda p: p.name
)
def test_bundled_scenes_validate_and_plan(path: Path) -> None:
    scene = load_scene(path)
    assert len(build_plan(scene).frames) == scene.total_frames
