"""The per-frame render function, its state and checkpoints (tiny stand-in perceptor, 32², CPU)."""

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from pytti_engine.checkpoints import CheckpointError, CheckpointMeta, load_checkpoint, save_checkpoint
from pytti_engine.io import png_bytes
from pytti_engine.job import build_context
from pytti_engine.render import RenderContext, initial_state, render_frame, render_frames
from pytti_engine.scene import Plan, build_plan, load_scene

ANIMATED = """\
animation: 2d
translate_x: "3 * sin(t)"
rotate_2d: 2
zoom: 1.05
"""


def _setup(write_scene: Callable[..., Path], body: str = ANIMATED, **kw: int) -> tuple[Plan, RenderContext]:
    scene = load_scene(write_scene(body, **kw))
    plan = build_plan(scene)
    return plan, build_context(scene, plan, torch.device("cpu"))


def _pngs(plan: Plan, ctx: RenderContext) -> list[bytes]:
    out: list[bytes] = []
    render_frames(plan.frames, ctx, on_frame=lambda r: out.append(png_bytes(r.image)))
    return out


def test_frame_changes_image_and_reports_steps(write_scene: Callable[..., Path]) -> None:
    plan, ctx = _setup(write_scene, steps=3)
    events = []
    start = initial_state(ctx).image.decode().detach().clone()
    result = render_frame(None, plan.frames[0], ctx, on_step=events.append)
    assert [e.step for e in events] == [1, 2, 3]
    assert all(e.frame == 1 and e.steps == 3 for e in events)
    assert result.state.step == 3 and result.state.frame == 1
    assert result.image.shape == (1, 3, 32, 32)
    assert (result.image - start).abs().max() > 1e-4, "optimization did not move the image"
    assert 0.0 <= float(result.image.min()) and float(result.image.max()) <= 1.0


def test_render_is_deterministic(write_scene: Callable[..., Path]) -> None:
    plan, ctx = _setup(write_scene)
    assert _pngs(plan, ctx) == _pngs(plan, ctx)


def test_seed_changes_the_render(write_scene: Callable[..., Path]) -> None:
    plan, ctx = _setup(write_scene)
    scene2 = load_scene(write_scene(ANIMATED, name="s2.yaml", seed=4))
    ctx2 = build_context(scene2, build_plan(scene2), torch.device("cpu"))
    assert _pngs(plan, ctx)[0] != _pngs(build_plan(scene2), ctx2)[0]


def test_checkpoint_round_trip_reproduces_next_frame_exactly(
    write_scene: Callable[..., Path], tmp_path: Path
) -> None:
    plan, ctx = _setup(write_scene, frames=4)
    straight = _pngs(plan, ctx)

    state = render_frames(plan.frames[:2], ctx)
    assert state is not None
    ckpt = tmp_path / "000002.pt"
    save_checkpoint(ckpt, state, CheckpointMeta(frame=2, step=state.step, key="k2", png_sha256="x"))
    del state
    resumed, meta = load_checkpoint(
        ckpt, learning_rate=ctx.settings.learning_rate, device=torch.device("cpu")
    )
    assert meta.frame == 2 and meta.key == "k2" and resumed.step == 2 * ctx.settings.steps_per_frame
    tail: list[bytes] = []
    render_frames(plan.frames[2:], ctx, state=resumed, on_frame=lambda r: tail.append(png_bytes(r.image)))
    assert tail == straight[2:]


def test_truncated_checkpoint_is_rejected(write_scene: Callable[..., Path], tmp_path: Path) -> None:
    plan, ctx = _setup(write_scene)
    state = render_frames(plan.frames[:1], ctx)
    assert state is not None
    ckpt = tmp_path / "c.pt"
    save_checkpoint(ckpt, state, CheckpointMeta(frame=1, step=1, key="k", png_sha256="x"))
    ckpt.write_bytes(ckpt.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="unreadable"):
        load_checkpoint(ckpt, learning_rate=0.02, device=torch.device("cpu"))


def test_zero_steps_renders_pure_motion(write_scene: Callable[..., Path]) -> None:
    """With steps_per_frame 0 each frame is the previous one warped: frame 2 differs, optimizer idle."""
    plan, ctx = _setup(write_scene, steps=0)
    results = []
    render_frames(plan.frames, ctx, on_frame=results.append)
    assert results[-1].state.step == 0
    first, second = results[0].image, results[1].image
    assert torch.equal(first, initial_state(ctx).image.decode().detach())
    assert not torch.equal(first, second)


def test_no_animation_keeps_the_image_between_frames(write_scene: Callable[..., Path]) -> None:
    plan, ctx = _setup(write_scene, body="animation: 'off'\n", steps=0)
    results = []
    render_frames(plan.frames, ctx, on_frame=results.append)
    assert all(torch.equal(r.image, results[0].image) for r in results)


def test_init_image_is_the_first_frame_without_steps(
    write_scene: Callable[..., Path], tmp_path: Path
) -> None:
    from PIL import Image

    init = tmp_path / "init.png"
    Image.new("RGB", (64, 64), (255, 0, 0)).save(init)
    plan, ctx = _setup(write_scene, body=f"init_image: {init}\n", steps=0)
    state = initial_state(ctx)
    img = state.image.decode().detach()
    assert img.shape == (1, 3, 32, 32)
    assert torch.allclose(img[0, 0], torch.ones(32, 32)) and float(img[0, 1:].abs().max()) == 0.0


def test_step_events_break_the_loss_into_named_terms(write_scene: Callable[..., Path]) -> None:
    plan, ctx = _setup(write_scene, body=ANIMATED + "gradient_accumulation_steps: 2\n", steps=2)
    events = []
    render_frame(None, plan.frames[0], ctx, on_step=events.append)
    event = events[-1]
    assert {"prompt/a red circle", "prompt/noise", "smoothing"} <= set(event.losses)
    assert sum(event.losses.values()) == pytest.approx(event.loss, rel=1e-5, abs=1e-6)
    assert event.learning_rate == pytest.approx(ctx.settings.learning_rate)
