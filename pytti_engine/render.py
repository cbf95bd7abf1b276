"""Render frames: the engine's per-frame function and the bare loop around it.

``render_frame(state, frame, ctx)`` is the unit the orchestration layer calls once per frame:

1. start from the previous frame's state (or make the initial image for frame 1);
2. warp the image (and the optimizer's per-pixel moments) by this frame's camera motion;
3. run ``steps_per_frame`` optimizer steps against the frame's prompts, with randomness drawn from
   a generator seeded by (seed, frame) so a resumed render repeats itself exactly;
4. return the new state, the image and the last loss.

Progress goes out through ``on_step(StepEvent)``; nothing here logs to a UI or writes files.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch

from pytti_engine.cutouts import CutoutConfig, sample_cutouts
from pytti_engine.devices import make_generator
from pytti_engine.errors import PyttiError
from pytti_engine.image_params.rgb import RGBImage
from pytti_engine.io import load_image
from pytti_engine.losses import prompt_loss
from pytti_engine.motion import apply_motion
from pytti_engine.perceptors import Perceptor
from pytti_engine.prompts import PromptTargets
from pytti_engine.state import RenderState, make_optimizer
from pytti_engine.types import PaddingMode, SamplingMode


class PromptLike(Protocol):
    """What the renderer reads of a resolved prompt (``pytti_engine.scene.PromptValue``)."""

    @property
    def text(self) -> str: ...
    @property
    def weight(self) -> float: ...
    @property
    def stop(self) -> float | None: ...


class FrameLike(Protocol):
    """What the renderer reads of one frame of the plan (``pytti_engine.scene.FramePlan``)."""

    @property
    def index(self) -> int: ...
    @property
    def prompts(self) -> Sequence[PromptLike]: ...
    @property
    def translate_x(self) -> float: ...
    @property
    def translate_y(self) -> float: ...
    @property
    def rotate_2d(self) -> float: ...
    @property
    def zoom(self) -> float: ...


@dataclass(frozen=True)
class RenderSettings:
    """The scene settings the engine needs, as plain values (one narrow config, not the whole scene)."""

    width: int
    height: int
    seed: int
    steps_per_frame: int
    learning_rate: float
    cutouts: int
    cut_pow: float
    animation: str
    infill_mode: PaddingMode
    sampling_mode: SamplingMode
    init_image: Path | None = None

    @classmethod
    def from_scene(cls, scene: Any) -> RenderSettings:
        """Pick the engine's settings out of a validated ``Scene``."""
        return cls(
            width=scene.width,
            height=scene.height,
            seed=scene.seed,
            steps_per_frame=scene.steps_per_frame,
            learning_rate=scene.learning_rate,
            cutouts=scene.cutouts,
            cut_pow=scene.cut_pow,
            animation=scene.animation,
            infill_mode=scene.infill_mode,
            sampling_mode=scene.sampling_mode,
            init_image=scene.init_image,
        )

    def fingerprint(self) -> dict[str, Any]:
        """JSON-friendly values that determine pixels (used in frame keys)."""
        d = dict(self.__dict__)
        d["init_image"] = str(self.init_image) if self.init_image else None
        return d


@dataclass(frozen=True)
class StepEvent:
    """One optimizer step finished."""

    frame: int
    step: int  # 1-based within the frame
    steps: int
    loss: float


StepCallback = Callable[[StepEvent], None]


@dataclass(frozen=True)
class RenderContext:
    """Everything constant across frames: settings, loaded perceptors and prompt embeddings."""

    settings: RenderSettings
    perceptors: tuple[Perceptor, ...]
    perceptor_weights: tuple[float, ...]
    targets: PromptTargets
    device: torch.device


@dataclass(frozen=True)
class FrameResult:
    """What :func:`render_frame` returns.

    Attributes:
        state: the state after this frame (the same object that was passed in, advanced).
        image: (1, 3, H, W) image in [0, 1], detached.
        loss: the total loss of the frame's last step (``nan`` when no step ran).
        seconds: wall time of the frame.
    """

    state: RenderState
    image: torch.Tensor
    loss: float
    seconds: float


def initial_state(ctx: RenderContext) -> RenderState:
    """The state before frame 1: the init image, or uniform noise drawn from (seed, frame 0)."""
    s = ctx.settings
    if s.init_image is not None:
        pixels = load_image(s.init_image, (s.width, s.height), device=ctx.device)
    else:
        gen = make_generator(s.seed, 0, "init")
        pixels = torch.rand(1, 3, s.height, s.width, generator=gen).to(ctx.device)
    image = RGBImage(pixels)
    return RenderState(image=image, optimizer=make_optimizer(image, s.learning_rate))


def step_loss(
    image: torch.Tensor, frame: FrameLike, ctx: RenderContext, gen: torch.Generator
) -> torch.Tensor:
    """Total prompt loss of one step: every perceptor, its own cutouts, every prompt of the frame."""
    total = image.new_zeros(())
    for i, perceptor in enumerate(ctx.perceptors):
        config = CutoutConfig(
            cutouts=ctx.settings.cutouts, cut_pow=ctx.settings.cut_pow, cut_size=perceptor.input_size
        )
        cuts = sample_cutouts(image, config, gen)
        embeds = perceptor.encode_image(cuts.images)
        for prompt in frame.prompts:
            target = ctx.targets.lookup(i, prompt.text).to(embeds.device)
            total = total + ctx.perceptor_weights[i] * prompt_loss(embeds, target, prompt.weight, prompt.stop)
    return total


def optimize_frame(
    state: RenderState, frame: FrameLike, ctx: RenderContext, on_step: StepCallback | None = None
) -> float:
    """Run the frame's optimizer steps in place; returns the last step's loss (``nan`` if none ran)."""
    steps = ctx.settings.steps_per_frame if frame.prompts else 0
    gen = make_generator(ctx.settings.seed, frame.index, "steps")
    loss_value = float("nan")
    for k in range(1, steps + 1):
        state.optimizer.zero_grad(set_to_none=True)
        loss = step_loss(state.image.decode(), frame, ctx, gen)
        if not torch.isfinite(loss):
            raise PyttiError(f"frame {frame.index}, step {k}: the loss is {loss.item()} (not finite)")
        loss.backward()
        state.optimizer.step()
        state.image.project_()
        state.step += 1
        loss_value = float(loss.detach())
        if on_step is not None:
            on_step(StepEvent(frame=frame.index, step=k, steps=steps, loss=loss_value))
    return loss_value


def render_frame(
    state: RenderState | None, frame: FrameLike, ctx: RenderContext, on_step: StepCallback | None = None
) -> FrameResult:
    """Render one frame from the previous frame's state.

    Args:
        state: the state after frame ``frame.index - 1`` (``None`` for the first frame).
        frame: this frame of the plan.
        ctx: the render context.
        on_step: called after every optimizer step.

    Returns:
        The advanced state, the image and the last loss.
    """
    start = time.perf_counter()
    # 1. Start from the previous frame, or the initial image.
    if state is None:
        state = initial_state(ctx)
    # 2. Camera motion (frame 1 shows the initial image unmoved).
    else:
        apply_motion(state, frame, ctx.settings)
    # 3. Optimize.
    loss = optimize_frame(state, frame, ctx, on_step)
    state.frame = frame.index
    image = state.image.decode().detach().clone()
    return FrameResult(state=state, image=image, loss=loss, seconds=time.perf_counter() - start)


def render_frames(
    frames: Sequence[FrameLike],
    ctx: RenderContext,
    state: RenderState | None = None,
    on_frame: Callable[[FrameResult], None] | None = None,
) -> RenderState | None:
    """The bare engine loop: render ``frames`` in order, continuing from ``state``."""
    for frame in frames:
        result = render_frame(state, frame, ctx)
        state = result.state
        if on_frame is not None:
            on_frame(result)
    return state
