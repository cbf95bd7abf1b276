"""The GPU tier: a scene renders on CUDA with bf16 autocast and the device generator, repeats itself run
to run and after a checkpoint resume within the stated tolerance (``support.MAX_LEVELS``/``MEAN_LEVELS``),
and the optimizer loop syncs with the host only at its loss reads (tiny stand-in perceptor, 64²)."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from pytti_engine.checkpoints import CheckpointMeta, load_checkpoint, save_checkpoint
from pytti_engine.io import tensor_to_uint8
from pytti_engine.job import build_context
from pytti_engine.render import (
    FrameResult,
    RenderContext,
    _autocast,
    optimize_frame,
    render_frame,
    render_frames,
)
from pytti_engine.scene import Plan, build_plan, load_scene
from tests.gpu.support import GPU_TIER, assert_within_tolerance

pytestmark = GPU_TIER

MOVING = 'animation: 2d\ntranslate_x: 1.5\nrotate_2d: "2 * t"\nzoom: 1.03\nsmoothing_weight: 0.05\n'


def _setup(
    write_scene: Callable[..., Path], *, frames: int = 3, steps: int = 8
) -> tuple[Plan, RenderContext]:
    scene = load_scene(write_scene(MOVING, size=64, frames=frames, steps=steps))
    plan = build_plan(scene)
    return plan, build_context(scene, plan, torch.device("cuda"))


def _render(plan: Plan, ctx: RenderContext) -> list[np.ndarray]:
    out: list[np.ndarray] = []
    render_frames(plan.frames, ctx, on_frame=lambda r: out.append(tensor_to_uint8(r.image)))
    return out


def test_scene_renders_on_cuda_with_autocast_and_the_device_generator(
    write_scene: Callable[..., Path],
) -> None:
    plan, ctx = _setup(write_scene)
    assert ctx.settings.mixed_precision and isinstance(_autocast(ctx), torch.autocast)
    dtypes: list[torch.dtype] = []
    visual = ctx.perceptors[0].model.visual
    assert isinstance(visual, torch.nn.Module)
    hook = visual.register_forward_hook(lambda _m, _i, out: dtypes.append(out.dtype))
    results: list[FrameResult] = []
    try:
        render_frames(plan.frames, ctx, on_frame=results.append)
    finally:
        hook.remove()
    assert dtypes and set(dtypes) == {torch.bfloat16}, "the perceptor forward runs under bf16 autocast"
    state = results[-1].state
    assert state.step_generator is not None and state.step_generator.device.type == "cuda"
    first, last = results[0].image, results[-1].image
    assert first.device.type == "cuda" and torch.isfinite(last).all()
    assert 0.0 <= float(last.min()) and float(last.max()) <= 1.0
    assert (last - first).abs().max() > 1e-3, "the frames should move and change"
    assert all(math.isfinite(r.loss) for r in results)


def test_cuda_render_repeats_itself_within_tolerance(write_scene: Callable[..., Path]) -> None:
    plan, ctx = _setup(write_scene)
    assert_within_tolerance(_render(plan, ctx), _render(plan, ctx), "CUDA run to run")


def test_checkpoint_resume_on_cuda_matches_the_uninterrupted_render(
    write_scene: Callable[..., Path], tmp_path: Path
) -> None:
    plan, ctx = _setup(write_scene, frames=4)
    reference = _render(plan, ctx)
    state = None
    for frame in plan.frames[:2]:
        state = render_frame(state, frame, ctx).state
    assert state is not None
    path = tmp_path / "000002.pt"
    save_checkpoint(path, state, CheckpointMeta(frame=2, step=state.step, key="k", png_sha256="0"))
    resumed, _ = load_checkpoint(path, learning_rate=ctx.settings.learning_rate, device=ctx.device)
    assert resumed.step_generator is not None and resumed.step_generator.device.type == "cuda"
    assert torch.equal(resumed.step_generator.get_state(), state.step_generator.get_state())  # type: ignore[union-attr]
    tail = []
    for frame in plan.frames[2:]:
        result = render_frame(resumed, frame, ctx)
        resumed = result.state
        tail.append(tensor_to_uint8(result.image))
    assert_within_tolerance(reference[2:], tail, "CUDA checkpoint resume")


def test_the_loop_syncs_only_at_its_loss_reads(write_scene: Callable[..., Path]) -> None:
    """Under CUDA's sync debug mode, a frame of 10 steps read every 5 syncs at most ceil(10/5)+1 times."""
    plan, ctx = _setup(write_scene, steps=10)
    ctx = RenderContext(**{**ctx.__dict__, "check_every": 5})
    state = render_frame(None, plan.frames[0], ctx).state  # one-off set-up (caches, Adam state) first
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            optimize_frame(state, plan.frames[1], ctx)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    syncs = [f"{w.filename}:{w.lineno}: {w.message}" for w in caught if "synchroniz" in str(w.message)]
    print(f"host syncs in a 10-step frame read every 5 steps: {len(syncs)}")
    assert len(syncs) <= math.ceil(10 / 5) + 1, "\n".join(syncs)
