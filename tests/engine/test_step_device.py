"""The optimizer loop on an accelerator, checked on the CPU: no host sync per step, every tensor made on
the render device without a copy from host memory, randomness from a device generator that the
checkpoint keeps, and a NaN still failing the frame (tiny stand-in perceptor, 32², CPU)."""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.overrides import TorchFunctionMode

from pytti_engine.checkpoints import CheckpointMeta, load_checkpoint, restore_generator, save_checkpoint
from pytti_engine.cutouts import CutoutConfig, _draw, _level_range, _levels, _sample, _sample_levels_on_device
from pytti_engine.devices import make_generator
from pytti_engine.errors import PyttiError
from pytti_engine.job import build_context
from pytti_engine.render import (
    GPU_CHECK_EVERY,
    RenderContext,
    StepEvent,
    check_interval,
    optimize_frame,
    render_frame,
)
from pytti_engine.scene import Plan, build_plan, load_scene

# What makes the host wait for a GPU: reading a value, or an op whose output size depends on values.
_HOST_READS = {
    torch.Tensor.item,
    torch.Tensor.tolist,
    torch.Tensor.__float__,
    torch.Tensor.__int__,
    torch.Tensor.__bool__,
    torch.Tensor.cpu,
    torch.Tensor.numpy,
    torch.Tensor.nonzero,
    torch.nonzero,
    torch.Tensor.unique,
    torch.unique,
    torch.isfinite,
    torch.Tensor.isfinite,
}
# Functions that make a tensor from nothing: on a GPU they need an explicit device.
_FACTORIES = {
    torch.tensor,
    torch.as_tensor,
    torch.zeros,
    torch.ones,
    torch.empty,
    torch.full,
    torch.eye,
    torch.arange,
    torch.linspace,
    torch.scalar_tensor,
    torch.rand,
    torch.randn,
    torch.randint,
    torch.randperm,
}
_RANDOM = {
    torch.rand,
    torch.randn,
    torch.randint,
    torch.randperm,
    torch.normal,
    torch.bernoulli,
    torch.multinomial,
    torch.rand_like,
    torch.randn_like,
    torch.randint_like,
    torch.Tensor.uniform_,
    torch.Tensor.normal_,
    torch.Tensor.bernoulli_,
    torch.Tensor.random_,
    torch.Tensor.exponential_,
}
# Made from Python data: a copy from (pageable) host memory, which waits for the CUDA stream.
_HOST_COPIES = {torch.tensor, torch.as_tensor, torch.Tensor.new_tensor}


class StepAudit(TorchFunctionMode):
    """Records, during a step, host reads and every tensor made in a way that would not stay on a GPU.

    Adam's step count is a CPU tensor on every device (``torch.optim``'s own design, not a device sync),
    so reads from inside ``torch.optim`` are not counted.
    """

    def __init__(self, device: torch.device) -> None:
        super().__init__()
        self.device = device
        self.reads: list[str] = []
        self.problems: list[str] = []

    def __torch_function__(
        self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None
    ) -> Any:
        kwargs = kwargs or {}
        caller = sys._getframe(1)
        where = f"{Path(caller.f_code.co_filename).name}:{caller.f_lineno}"
        name = getattr(func, "__qualname__", repr(func))
        if func in _HOST_READS and f"{Path('torch', 'optim')}" not in caller.f_code.co_filename:
            self.reads.append(f"{name} at {where}")
        if func in _FACTORIES and kwargs.get("device") is None:
            self.problems.append(f"{name} without a device at {where}")
        if func in _HOST_COPIES and args and not isinstance(args[0], torch.Tensor):
            self.problems.append(f"{name} of Python data (a host copy) at {where}")
        if func in _RANDOM:
            generator = kwargs.get("generator")
            if generator is None:
                self.problems.append(f"{name} from the global generator at {where}")
            elif generator.device != self.device:
                self.problems.append(f"{name} from a generator on {generator.device} at {where}")
        return func(*args, **kwargs)


def _context(
    write_scene: Callable[..., Path], body: str = "", *, steps: int, check_every: int | None
) -> tuple[Plan, RenderContext]:
    scene = load_scene(write_scene(body, steps=steps))
    plan = build_plan(scene)
    ctx = build_context(scene, plan, torch.device("cpu"))
    return plan, RenderContext(**{**ctx.__dict__, "check_every": check_every})


def test_check_interval_is_one_on_the_cpu_and_larger_elsewhere(write_scene: Callable[..., Path]) -> None:
    _, ctx = _context(write_scene, steps=1, check_every=None)
    assert check_interval(ctx) == 1
    gpu_like = RenderContext(**{**ctx.__dict__, "device": torch.device("cuda")})
    assert check_interval(gpu_like) == GPU_CHECK_EVERY > 1
    with pytest.raises(ValueError, match="check_every"):
        check_interval(RenderContext(**{**ctx.__dict__, "check_every": 0}))


@pytest.mark.parametrize("steps", [7, 9])
def test_loop_reads_the_loss_once_every_n_steps_and_at_the_end(
    write_scene: Callable[..., Path], torch_one_thread: None, steps: int
) -> None:
    every = 3
    plan, ctx = _context(write_scene, "smoothing_weight: 0.1\n", steps=steps, check_every=every)
    state = render_frame(None, plan.frames[0], ctx).state  # caches (Adam state, normalization) made
    events: list[StepEvent] = []
    audit = StepAudit(ctx.device)
    with audit:
        loss = optimize_frame(state, plan.frames[1], ctx, on_step=events.append)
    assert len(audit.reads) <= math.ceil(steps / every) + 1, audit.reads
    expected = [n for n in range(1, steps + 1) if n % every == 0 or n == steps]
    assert [e.step for e in events] == expected
    assert events[-1].loss == loss and math.isfinite(loss)
    assert sum(events[-1].losses.values()) == pytest.approx(loss, rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("body", ["smoothing_weight: 0.1\n", "image_model: limited_palette\n"])
def test_step_makes_every_tensor_on_the_render_device(
    write_scene: Callable[..., Path], torch_one_thread: None, body: str
) -> None:
    """The step draws no host randomness and copies nothing from host memory (on a GPU both would be
    per-step transfers and syncs): every factory call names the device, every random draw comes from
    a generator on the render device, and no tensor is made from Python data."""
    plan, ctx = _context(write_scene, body, steps=3, check_every=None)
    state = render_frame(None, plan.frames[0], ctx).state
    audit = StepAudit(ctx.device)
    with audit:
        optimize_frame(state, plan.frames[1], ctx)
    assert audit.problems == []
    assert state.step_generator is not None and state.step_generator.device == ctx.device


def test_audit_sees_host_randomness_and_host_copies() -> None:
    """The audit itself: a CPU-generator draw, a global draw, a tensor from Python data, a factory
    without a device and a host read are all caught."""
    audit = StepAudit(torch.device("cuda"))
    with audit:
        torch.randn(2, generator=torch.Generator(), device="cpu")
        torch.rand(2, device="cpu")
        torch.tensor([1.0, 2.0], device="cpu")
        torch.zeros(2).tolist()
    kinds = [p.split(" at ")[0].split(" ", 1)[1] for p in audit.problems]
    assert kinds == [
        "from a generator on cpu",
        "from the global generator",
        "of Python data (a host copy)",
        "without a device",
    ]
    assert len(audit.reads) == 1 and "tolist at" in audit.reads[0]


@pytest.mark.parametrize(("every", "message"), [(3, "one of steps 4..6"), (1, "step 5 ")])
def test_a_nan_between_reads_still_fails_the_frame(
    write_scene: Callable[..., Path],
    torch_one_thread: None,
    monkeypatch: pytest.MonkeyPatch,
    every: int,
    message: str,
) -> None:
    """A NaN at step 5 only (steps 6 and 7 are finite again) fails the frame, naming it and the steps."""
    import pytti_engine.render as render

    plan, ctx = _context(write_scene, steps=7, check_every=every)
    state = render_frame(None, plan.frames[0], ctx).state
    calls = iter(range(1, 100))
    real = render.image_loss

    def nan_at_step_5(*args: Any, **kwargs: Any) -> torch.Tensor | None:
        value = real(*args, **kwargs)
        return torch.full((), math.nan, device=ctx.device) if next(calls) == 5 else value

    monkeypatch.setattr(render, "image_loss", nan_at_step_5)
    with pytest.raises(PyttiError, match=f"frame 2: the loss is not finite in {message}"):
        optimize_frame(state, plan.frames[1], ctx)


def test_checkpoint_keeps_the_step_generator(
    write_scene: Callable[..., Path], tmp_path: Path, torch_one_thread: None
) -> None:
    plan, ctx = _context(write_scene, steps=2, check_every=None)
    state = render_frame(None, plan.frames[0], ctx).state
    assert state.step_generator is not None
    saved = state.step_generator.get_state()
    expected = make_generator(ctx.settings.seed, 1, "steps")  # the frame's seed, advanced by its draws
    assert not torch.equal(expected.get_state(), saved)
    path = tmp_path / "000001.pt"
    save_checkpoint(path, state, CheckpointMeta(frame=1, step=state.step, key="k", png_sha256="0"))
    restored, _ = load_checkpoint(path, learning_rate=ctx.settings.learning_rate, device=ctx.device)
    assert restored.step_generator is not None and restored.step_generator.device == ctx.device
    assert torch.equal(restored.step_generator.get_state(), saved)
    # A state saved on another kind of device, or none at all (older checkpoints), gives no generator.
    assert restore_generator({"device": "cuda", "state": saved}, torch.device("cpu")) is None
    assert restore_generator(None, torch.device("cpu")) is None


def _audit_levels(config: CutoutConfig, size: int, seeds: range) -> Iterator[tuple[torch.Tensor, set[int]]]:
    for seed in seeds:
        image = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(seed))
        draws = _draw(config, size, size, torch.Generator().manual_seed(seed))
        yield image, set(_levels(draws, config, image.shape[-2:]).tolist())


def test_level_range_covers_every_drawn_level() -> None:
    for cut_pow, augment in [(1.0, True), (2.0, True), (0.5, False)]:
        config = CutoutConfig(cutouts=64, cut_pow=cut_pow, cut_size=12, augment=augment)
        possible = _level_range(config, torch.Size([96, 96]))
        seen: set[int] = set()
        for _, used in _audit_levels(config, 96, range(5)):
            seen |= used
        assert seen <= set(possible) and len(possible) > 1
    # An image near the cut size has one possible level: one grid_sample, no look at the draws.
    assert _level_range(CutoutConfig(8, 1.0, 224), torch.Size([256, 256])) == range(0, 1)


def test_device_path_of_the_pyramid_samples_the_same_cutouts() -> None:
    """The GPU's sync-free sampling (every possible level, picked per cutout) equals the CPU's."""
    from pytti_engine.warps.modes import cutout_padding

    config = CutoutConfig(cutouts=16, cut_pow=1.0, cut_size=12)
    image = torch.rand(1, 3, 96, 96, generator=torch.Generator().manual_seed(0))
    draws = _draw(config, 96, 96, torch.Generator().manual_seed(1))
    from pytti_engine.cutouts import _crop_matrices

    matrices = _crop_matrices(draws)
    levels = _levels(draws, config, image.shape[-2:])
    assert len(levels.unique()) > 1
    cpu = _sample(image, matrices, draws, config)
    possible = _level_range(config, image.shape[-2:])
    device = _sample_levels_on_device(image, matrices, levels, possible, cutout_padding("clamp"), 12)
    assert torch.equal(cpu, device)
