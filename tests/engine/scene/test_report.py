"""Plan tables: columns, CSV and the compact text table."""

from __future__ import annotations

from pytti_engine.scene import FramePlan, MaskValue, Plan, PromptValue, build_plan, load_scene_text
from pytti_engine.scene.report import plan_columns, plan_table, prompt_key, summary


def frame(index: int, **camera: object) -> FramePlan:
    prompts = (PromptValue("a", float(index), None),)
    return FramePlan(index, (index - 1) / 2, 0, prompts, 0.0, 0.0, 0.0, 1.0, **camera)  # type: ignore[arg-type]


def test_extra_camera_values_get_columns_only_when_used() -> None:
    still = plan_columns(Plan(2.0, (frame(1), frame(2))))
    assert still.names == (
        "frame",
        "t",
        "scene",
        "translate_x",
        "translate_y",
        "rotate_2d",
        "zoom",
        "weight[a]",
    )
    moving = plan_columns(Plan(2.0, (frame(1), frame(2, translate_z=3.0))))
    assert moving.names[7:] == ("translate_z", "weight[a]")
    assert [row[7] for row in moving.rows] == [0.0, 3.0]


def test_prompt_keys_include_masks() -> None:
    assert prompt_key(PromptValue("sky", 1, None)) == "sky"
    assert prompt_key(PromptValue("sky", 1, None, mask=MaskValue("position", "l", cutoff=0.3))) == "sky_l"
    assert (
        prompt_key(PromptValue("sky", 1, None, mask=MaskValue("image", "/m.png", inverted=True)))
        == "sky_[-/m.png]"
    )


def test_same_prompt_twice_in_a_frame_adds_up() -> None:
    plan = Plan(
        1.0, (FramePlan(1, 0.0, 1, (PromptValue("a", 0.25, None), PromptValue("a", 0.5, None)), 0, 0, 0, 1),)
    )
    assert plan_columns(plan).rows[0][-1] == 0.75


def test_table_lists_constants_once_and_summary() -> None:
    scene = load_scene_text("fps: 2\nscenes: [{prompts: 'a:frame | b:2', frames: 3}]")
    plan = build_plan(scene)
    assert plan_table(plan).splitlines() == [
        "constant: translate_x=0, translate_y=0, rotate_2d=0, zoom=1, weight[b]=2",
        "w1: a",
        "frame    t  scene  w1",
        "    1    0      0   0",
        "    2  0.5      0   1",
        "    3    1      0   2",
    ]
    assert (
        summary(scene, plan)
        == "ok: 3 frames, 1 scene, 1.5 s at 2 fps, 256x256, animation off, 1 perceptor, 50 steps/frame"
    )
    with_pre = scene.model_copy(update={"pre_animation_steps": 20})
    assert summary(with_pre, plan).endswith("50 steps/frame, 20 pre-animation steps")
