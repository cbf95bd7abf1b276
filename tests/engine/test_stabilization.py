"""Stabilization losses (pytti_engine.stabilization): pure losses, the per-frame target, and a render."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from pytti_engine.depth import load_depth_model, write_tiny_depth_model
from pytti_engine.job import build_context
from pytti_engine.perceptors import Perceptor
from pytti_engine.render import FrameResult, render_frames
from pytti_engine.scene import build_plan, load_scene
from pytti_engine.stabilization import (
    Stabilizer,
    edge_loss,
    load_mask,
    masked_mse,
    sobel_edges,
    unit_disparity,
)
from pytti_engine.video import EncodeSettings, assemble_video
from pytti_engine.warps import Motion2D, warp_2d


def test_masked_mse_and_edges_known_answers() -> None:
    a, b = torch.zeros(1, 3, 4, 4), torch.ones(1, 3, 4, 4)
    assert masked_mse(a, b) == 1.0
    mask = torch.zeros(1, 1, 4, 4)
    mask[..., :2] = 1.0
    assert masked_mse(a, b, mask) == 0.5
    step = torch.zeros(1, 3, 8, 8)
    step[..., 4:] = 1.0  # a vertical edge between columns 3 and 4
    edges = sobel_edges(step)
    assert edges.shape == (1, 2, 8, 8)
    assert edges[:, 1].abs().max() == 0  # no vertical gradient
    assert edges[:, 0, :, 3:5].min() > 0 and edges[:, 0, :, :2].abs().max() == 0
    assert edge_loss(step, edges) == 0
    assert edge_loss(step + 0.5, edges) == 0  # brightness does not change edges
    assert edge_loss(torch.zeros_like(step), edges) > 0


def test_unit_disparity_is_affine_invariant() -> None:
    d = torch.rand(1, 1, 5, 5)
    torch.testing.assert_close(unit_disparity(3 * d + 2), unit_disparity(d))


def test_stabilizer_losses_belong_to_their_frame_only() -> None:
    stab = Stabilizer()
    target = torch.full((1, 3, 8, 8), 0.5)
    valid = torch.zeros(1, 1, 8, 8)
    valid[..., :4, :] = 1.0
    stab.begin_frame(3, {"direct": 2.0, "flow": 10.0, "edge": 0.0}, target, valid)
    image = torch.zeros(1, 3, 8, 8, requires_grad=True)
    loss = stab.pixel_loss(image, 3)
    assert loss is not None
    # direct (HSV: R, G, B, S, V of black vs grey 0.5: (3 · 0.25 + 0 + 0.25) / 5 = 0.2): 2 * 0.2;
    # flow: 10 * 0.25 on the valid half only
    assert float(loss.detach()) == pytest.approx(2 * 0.2 + 10 * 0.125)
    loss.backward()
    assert image.grad is not None and image.grad.abs().sum() > 0
    assert stab.pixel_loss(image, 4) is None  # a stale target is never used
    stab.begin_frame(5, {}, target, None)
    assert stab.pixel_loss(image, 5) is None


def _mask_png(path: Path, left_white: bool) -> Path:
    arr = np.zeros((8, 8), dtype=np.uint8)
    arr[:, :4] = 255 if left_white else 0
    Image.fromarray(arr).save(path)
    return path


def test_masks_from_images_and_videos(tmp_path: Path) -> None:
    image_mask = load_mask(_mask_png(tmp_path / "m.png", True), (8, 8), 12.0)
    assert (
        image_mask.shape == (1, 1, 8, 8)
        and image_mask[..., :4].min() > 0.99
        and image_mask[..., 4:].max() < 0.01
    )
    frames = [_mask_png(tmp_path / f"{k}.png", k % 2 == 0) for k in range(4)]
    video = assemble_video(
        frames, tmp_path / "mask.mp4", EncodeSettings(fps=12, crf=0, preset="ultrafast", pix_fmt="yuv444p")
    )
    stab = Stabilizer(masks={"direct": video}, fps=12.0)
    first = stab.mask("direct", 1, (8, 8), torch.device("cpu"))
    second = stab.mask("direct", 2, (8, 8), torch.device("cpu"))
    assert first[..., :4].mean() > 0.9 and second[..., :4].mean() < 0.1
    assert stab.mask("direct", 99, (8, 8), torch.device("cpu")).shape == (1, 1, 8, 8)  # clamps to the last


def _distance_to_motion_target(
    write_scene: Callable[..., Path], stabilization: str, name: str, extra: str = ""
) -> float:
    body = f"animation: 2d\ntranslate_x: 2\nlearning_rate: 0.2\n{extra}stabilization: {stabilization}\n"
    scene = load_scene(write_scene(body, name=name, frames=2, steps=2, size=24))
    plan = build_plan(scene)
    ctx = build_context(scene, plan, torch.device("cpu"))
    results: list[FrameResult] = []
    render_frames(plan.frames, ctx, on_frame=results.append)
    assert ctx.motion is not None
    stab = ctx.motion.stabilizer
    target = stab.target_for(2) if stab is not None else None
    if target is None:  # no stabilization: compare with the warped frame 1 the same way
        from pytti_engine.warps import Motion2D, warp_2d

        reference = warp_2d(results[0].image, Motion2D(translate_x=2.0), infill="wrap")
    else:
        reference = target.image
    return float((results[1].image - reference).pow(2).mean())


def test_direct_stabilization_keeps_the_frame_near_the_warped_previous_one(
    write_scene: Callable[..., Path],
) -> None:
    free = _distance_to_motion_target(write_scene, "{direct: 0}", "free.yaml")
    held = _distance_to_motion_target(write_scene, "{direct: 1000}", "held.yaml")
    assert held < 0.5 * free


def _blocks(path: Path) -> Path:
    """A 32² picture of grey blocks (edges and depth cues for the stabilization losses to keep)."""
    picture = Image.new("RGB", (32, 32), (60, 60, 60))
    for x in range(0, 32, 8):
        for y in range(0, 32, 8):
            if (x + y) // 8 % 2:
                picture.paste((160, 160, 160), (x, y, x + 8, y + 8))
    picture.save(path)
    return path


def _stabilized_frames(
    tmp_path: Path, toy_dir: Path, load: Callable[..., object], stabilization: str, extra: str = ""
) -> tuple[torch.Tensor, torch.Tensor]:
    """Frame 2 and its stabilization target (frame 1 moved by the camera) of a render whose prompt
    changes from red to green between the frames (the trained toy perceptor), so frame 2 wants to differ."""
    from tests.toy_support import render, toy_scene

    _blocks(tmp_path / "blocks.png")
    body = (
        f"init_image: blocks.png\nanimation: 2d\ntranslate_x: 2\n{extra}stabilization: {stabilization}\n"
        'scenes:\n  - prompts: "a red square"\n    frames: 1\n  - prompts: "a green square"\n    frames: 1\n'
    )
    _, results = render(toy_scene(tmp_path / "stab.yaml", toy_dir, "", steps=6, body=body), load)
    target = warp_2d(results[0].image, Motion2D(translate_x=2.0), infill="wrap")
    return results[1].image, target


@pytest.mark.usefixtures("torch_one_thread")
@pytest.mark.parametrize(("kind", "weight"), [("edge", "500"), ("semantic", "'10 + t'"), ("flow", "100")])
def test_edge_semantic_and_flow_weights_render(
    tmp_path: Path, toy_dir: Path, load_cached: Callable[..., Perceptor], kind: str, weight: str
) -> None:
    """With the weight on, frame 2 stays closer to its target (frame 1 moved) than without, measured the
    way each loss looks: edge maps, the toy perceptor's embedding, pixels (where the flow is valid)."""
    toy = load_cached(f"local-dir:{toy_dir}", None, torch.device("cpu"), None)

    def measure(frame: torch.Tensor, target: torch.Tensor) -> float:
        if kind == "edge":
            return float((sobel_edges(frame) - sobel_edges(target)).square().mean())
        if kind == "semantic":
            with torch.no_grad():
                a, b = (toy.encode_image(F.interpolate(x, size=32, mode="area"))[0] for x in (frame, target))
            return float(1 - a @ b)
        return float((frame - target).square().mean())

    free = measure(*_stabilized_frames(tmp_path, toy_dir, load_cached, f"{{{kind}: 0}}"))
    held = measure(*_stabilized_frames(tmp_path, toy_dir, load_cached, f"{{{kind}: {weight}}}"))
    assert held < 0.5 * free, (held, free)


@pytest.mark.usefixtures("torch_one_thread")
def test_depth_stabilization_with_the_tiny_model(
    tmp_path: Path, toy_dir: Path, load_cached: Callable[..., Perceptor]
) -> None:
    """With ``depth`` on, frame 2's depth map (the tiny depth model's, normalized) stays closer to its
    target's than without."""
    folder = write_tiny_depth_model(tmp_path / "depth")
    depth = load_depth_model(folder, torch.device("cpu"))

    def measure(frame: torch.Tensor, target: torch.Tensor) -> float:
        with torch.no_grad():
            return float((unit_disparity(depth(frame)) - unit_disparity(depth(target))).square().mean())

    extra = f"depth_model: {folder}\n"
    free = measure(*_stabilized_frames(tmp_path, toy_dir, load_cached, "{depth: 0}", extra))
    held = measure(*_stabilized_frames(tmp_path, toy_dir, load_cached, "{depth: 10}", extra))
    assert held < 0.5 * free, (held, free)
