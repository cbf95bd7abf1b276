"""Prompt weights and stops per optimizer step, and video masks ``_[mask.mp4]`` (stand-in perceptor, 32²)."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import Tensor

from pytti_engine import render as render_module
from pytti_engine.errors import SceneError
from pytti_engine.io import png_bytes
from pytti_engine.job import build_context, check_renderable
from pytti_engine.masks import image_mask_weights
from pytti_engine.prompts import VideoMaskTarget
from pytti_engine.render import FrameResult, render_frames
from pytti_engine.scene import build_plan, load_scene
from pytti_engine.scene.expr import compile_value
from pytti_engine.video import EncodeSettings, assemble_video
from pytti_engine.video_source import source_index

CPU = torch.device("cpu")
FPS = 12.0  # the write_scene fixture's fps


def _scene(prompts: str, frames: int = 2, extra: str = "") -> str:
    return f'{extra}scenes:\n  - prompts: "{prompts}"\n    frames: {frames}\n'


def _step_t(frame: int, step: int, steps: int) -> float:
    """PyTTI's time of a step: the frame's time plus (step - 1) / (steps_per_frame * fps)."""
    return (frame - 1) / FPS + (step - 1) / (steps * FPS)


# ---- per-step weights and stops ------------------------------------------------------------------------


def test_weights_and_stops_reading_t_are_resolved_per_step(write_scene: Callable[..., Path]) -> None:
    plan = build_plan(
        load_scene(write_scene(_scene("cat:(t * 100) | sky:sin(3 * t):(0.1 * t) | sea:2"), steps=3))
    )
    weight, sine, stop = compile_value("t * 100"), compile_value("sin(3 * t)"), compile_value("0.1 * t")
    for frame in plan.frames:
        cat, sky, sea = frame.prompts
        for step in (1, 2, 3):
            t = _step_t(frame.index, step, 3)
            env = {"t": t, "frame": frame.index - 1.0}
            assert cat.weight_at(step) == weight.evaluate(env)
            assert sky.weight_at(step) == sine.evaluate(env)
            assert sky.stop_at(step) == stop.evaluate(env)
            assert sea.weight_at(step) == 2.0 and sea.stop_at(step) is None
        assert cat.weight_at(1) == cat.weight and sky.stop_at(1) == sky.stop  # step 1 = the frame's time
        assert cat.weight_at(1) != cat.weight_at(3)
        assert cat.weight_at(3) == pytest.approx(100 * ((frame.index - 1) / FPS + 2 / 36))
        record = frame.to_dict()["prompts"]  # the moving expressions enter the frame keys
        assert record[0]["per_step"] == {"scale": 1.0, "weight": "(t * 100)"}
        assert record[1]["per_step"] == {"scale": 1.0, "weight": "sin(3 * t)", "stop": "(0.1 * t)"}
        assert "per_step" not in record[2] and sea.per_step is None
        with pytest.raises(ValueError, match="outside the frame's steps"):
            cat.weight_at(4)


def test_values_constant_within_a_frame_keep_their_plan_records(write_scene: Callable[..., Path]) -> None:
    """Constants, ``frame``/``scene_frame`` expressions and one step per frame add nothing to the plan."""
    body = _scene("cat:(1 + frame) | sky:(0.5 * scene_frame):0.1 | sea:2")
    for steps in (1, 3):
        plan = build_plan(load_scene(write_scene(body, steps=steps)))
        for frame in plan.frames:
            assert all(p.per_step is None for p in frame.prompts)
            keys = {k for p in frame.to_dict()["prompts"] for k in p}
            assert keys == {"text", "weight", "stop", "image", "mask"}
    one = build_plan(load_scene(write_scene(_scene("cat:(t * 100)"), steps=1)))
    assert one.frames[1].prompts[0].per_step is None  # one step: the frame's value is the step's


def test_transition_blends_every_steps_weight(write_scene: Callable[..., Path]) -> None:
    body = (
        "scenes:\n"
        '  - prompts: "old:(1 + t)"\n    frames: 2\n'
        '  - prompts: "new:(10 * t)"\n    frames: 3\n    transition_frames: 2\n'
    )
    plan = build_plan(load_scene(write_scene(body, steps=3)))
    for k, frame in enumerate(plan.frames[2:4]):  # the two transition frames of the second scene
        tau = (k + 1) / 3
        new, old = frame.prompts
        assert (new.text, old.text) == ("new", "old")
        for step in (1, 2, 3):
            t = _step_t(frame.index, step, 3)
            assert new.weight_at(step) == pytest.approx(10 * t * tau)
            assert old.weight_at(step) == pytest.approx((1 + t) * (1 - tau))
        assert new.weight == new.weight_at(1) and old.weight == old.weight_at(1)
    assert [p.text for p in plan.frames[4].prompts] == ["new"]


def test_an_expression_failing_within_a_frame_is_reported(write_scene: Callable[..., Path]) -> None:
    """The plan checks every frame's last step; the renderer names any other step that fails."""
    scene = load_scene(write_scene(_scene("cat:1 / (t - 1 / 24)"), steps=2))  # t = 1/24: frame 1, step 2
    with pytest.raises(SceneError, match=r"division by zero at frame 1, step 2 \(t=0.04166"):
        build_plan(scene)
    plan = build_plan(load_scene(write_scene(_scene("cat:1 / (t - 1 / 36)"), steps=3)))  # frame 1, step 2
    cat = plan.frames[0].prompts[0]
    assert cat.weight_at(1) == -36.0 and cat.weight_at(3) == pytest.approx(1 / (2 / 36 - 1 / 36))
    with pytest.raises(SceneError, match=r"prompt weight: division by zero at frame 1, step 2") as info:
        cat.weight_at(2)
    assert info.value.line is not None and info.value.path.endswith("scene.yaml")


def test_the_renderer_uses_each_steps_weight_and_stop(
    write_scene: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    plan_scene = load_scene(write_scene(_scene("cat:(t * 100):(0.1 * t) | sea:2"), steps=3))
    plan = build_plan(plan_scene)
    ctx = build_context(plan_scene, plan, CPU)
    seen: list[tuple[str, float, float | None]] = []
    original = render_module._prompt_term

    def spy(prompt: render_module.PromptLike, weight: float, stop: float | None, *args: object) -> Tensor:
        seen.append((prompt.text, weight, stop))
        return original(prompt, weight, stop, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(render_module, "_prompt_term", spy)
    results = render_frames(plan.frames, ctx)
    assert results is not None
    expected = []
    for frame in plan.frames:
        cat, sea = frame.prompts
        for step in (1, 2, 3):
            expected += [("cat", cat.weight_at(step), cat.stop_at(step)), ("sea", 2.0, None)]
    # frame 1 has t = 0 at step 1: weight 0, so the prompt is skipped on that step only
    assert seen == [e for e in expected if e[1] != 0]
    assert seen[0] == ("sea", 2.0, None) and seen[1][0] == "cat"


def test_constant_weights_render_byte_identically_through_the_per_step_path(
    write_scene: Callable[..., Path],
) -> None:
    """``2 + 0 * t`` takes the per-step path with the same values as ``2``: identical pictures."""

    def pngs(prompts: str) -> list[bytes]:
        scene = load_scene(
            write_scene(_scene(prompts, frames=2, extra="animation: 2d\nzoom: 1.05\n"), steps=3)
        )
        plan = build_plan(scene)
        out: list[bytes] = []
        render_frames(
            plan.frames, build_context(scene, plan, CPU), on_frame=lambda r: out.append(png_bytes(r.image))
        )
        return out

    varying = build_plan(load_scene(write_scene(_scene("cat:(2 + 0 * t):(0.5 + 0 * t)"), steps=3)))
    assert [varying.frames[0].prompts[0].weight_at(s) for s in (1, 2, 3)] == [2.0, 2.0, 2.0]
    assert pngs("cat:2:0.5 | sea:-0.5") == pngs("cat:(2 + 0 * t):(0.5 + 0 * t) | sea:-0.5")


# ---- video masks -----------------------------------------------------------------------------------------


def _mask_frame(path: Path, kind: str) -> Path:
    pixels = np.zeros((32, 32, 3), dtype=np.uint8)
    if kind == "left":
        pixels[:, :16] = 255
    elif kind == "right":
        pixels[:, 16:] = 255
    else:
        pixels[:] = 255
    Image.fromarray(pixels).save(path)
    return path


@pytest.fixture
def mask_video(tmp_path: Path) -> Path:
    """Three frames at 12 fps, 32²: left half white, right half white, all white (lossless H.264)."""
    frames = [_mask_frame(tmp_path / f"m{k}.png", kind) for k, kind in enumerate(("left", "right", "all"))]
    settings = EncodeSettings(fps=12, crf=0, preset="ultrafast", pix_fmt="yuv444p")
    return assemble_video(frames, tmp_path / "mask.mp4", settings)


LEFT_RIGHT = (torch.tensor([[0.25, 0.5], [0.75, 0.5]]), torch.full((2, 2), 0.5))  # two cutouts: left, right


def test_video_mask_weights_follow_the_frame(write_scene: Callable[..., Path], mask_video: Path) -> None:
    body = _scene("cat:1_[mask.mp4] | dog:1_[-mask.mp4]", frames=5)
    scene = load_scene(write_scene(body, steps=1))
    plan = build_plan(scene)
    check_renderable(plan)  # no longer refused
    ctx = build_context(scene, plan, CPU)
    assert plan.frames[0].prompts[0].mask is not None and plan.frames[0].prompts[0].mask.kind == "video"
    source = str(mask_video)
    root2 = math.sqrt(2)
    # frames 4 and 5 are past the video's end: its last frame (all white) holds
    plain = [[root2, 0.0], [0.0, root2], [1.0, 1.0], [1.0, 1.0], [1.0, 1.0]]
    inverted = [[0.0, root2], [root2, 0.0], [0.0, 0.0], [0.0, 0.0], [0.0, 0.0]]
    for frame in plan.frames:
        for inv, expected in ((False, plain), (True, inverted)):
            mask = ctx.targets.mask_for("video", source, inv, frame.index)
            weights = image_mask_weights(mask, *LEFT_RIGHT)
            assert weights.tolist() == pytest.approx(expected[frame.index - 1], abs=0.02), (frame.index, inv)


def test_the_renderer_swaps_the_video_mask_every_frame(
    write_scene: Callable[..., Path], mask_video: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scene = load_scene(write_scene(_scene("cat:1_[mask.mp4] | dog:1_[-mask.mp4]", frames=3), steps=1))
    plan = build_plan(scene)
    ctx = build_context(scene, plan, CPU)
    left_means: list[tuple[float, float]] = []

    def spy(mask: Tensor, offsets: Tensor, sizes: Tensor) -> Tensor:
        left_means.append((round(float(mask[:, :16].mean()), 1), round(float(mask[:, 16:].mean()), 1)))
        return image_mask_weights(mask, offsets, sizes)

    monkeypatch.setattr(render_module, "image_mask_weights", spy)
    results: list[FrameResult] = []
    render_frames(plan.frames, ctx, on_frame=results.append)
    assert all(math.isfinite(r.loss) for r in results)
    # per frame (one step, one perceptor): cat then dog (inverted)
    assert left_means == [(1.0, 0.0), (0.0, 1.0), (0.0, 1.0), (1.0, 0.0), (1.0, 1.0), (0.0, 0.0)]


def test_video_mask_frames_map_like_the_video_source() -> None:
    frames = torch.zeros(3, 4, 4, 3, dtype=torch.uint8)
    for stride in (1, 2):
        target = VideoMaskTarget(frames, frame_stride=stride)
        assert [target.index(k) for k in range(1, 7)] == [source_index(k, stride, 3) for k in range(1, 7)]


def test_video_mask_errors_name_the_file(write_scene: Callable[..., Path], tmp_path: Path) -> None:
    with pytest.raises(SceneError, match="file not found: missing.mp4"):
        load_scene(write_scene(_scene("cat:1_[missing.mp4]")))
    (tmp_path / "notes.mp4").write_text("not a video")
    with pytest.raises(SceneError, match=r"video mask notes.mp4 is not a readable video"):
        load_scene(write_scene(_scene("cat:1_[-notes.mp4]")))
    plan = build_plan(load_scene(write_scene(_scene("cat:1_[https://example.org/m.mp4]"))))
    check_renderable(plan)  # a URL is fetched when the render starts (tests/engine/test_fetch.py)
