"""Render frames: the engine's per-frame function and the bare loop around it.

``render_frame(state, frame, ctx)`` is the unit the orchestration layer calls once per frame:

1. start from the previous frame's state (or make the initial image for frame 1);
2. optionally reset Adam (``reset_lr_each_frame``), then warp the image (and the optimizer's
   per-pixel moments) by this frame's camera motion;
3. run ``steps_per_frame`` optimizer steps (frame 1: ``pre_animation_steps`` more first) against the
   frame's prompts (each step with the prompts' weights and stops at its own time,
   ``PromptLike.weight_at(step)``), with randomness drawn from a
   generator on the render device seeded by (seed, frame, ``"steps"``) so a resumed render repeats
   itself exactly;
4. return the new state, the output image (the EMA when enabled) and the last loss.

No host sync per step: the loss stays on the device and is read (one transfer) only every
:func:`check_interval` steps and at the frame's last step; that read also checks that every step since
the previous read had a finite loss (a NaN or inf fails the frame, naming it and the step range).
Progress events go out at those reads only. On the CPU the interval is 1 (a read costs nothing there).

One step (:func:`optimize_step`): decode the image model once; for each of
``gradient_accumulation_steps`` micro-batches, every perceptor draws its own cutouts of the decoded
image, embeds them (bf16 autocast on CUDA) and adds the prompt losses; the gradients of the
micro-batches accumulate on a detached copy of the decoded image, which is then back-propagated into
the image model once, together with the image-level losses (TV smoothing, direct image prompts, init
image, palette regularisers). Then one Adam step, projection into range, and the EMA update.

Progress goes out through ``on_step(StepEvent)``; nothing here logs to a UI or writes files.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import torch
from torch import Tensor

from pytti_engine.cutouts import CutoutConfig, Cutouts, sample_cutouts
from pytti_engine.devices import make_generator
from pytti_engine.errors import PyttiError
from pytti_engine.image_params import ImageConfig, ImageParam, PaletteImage, default_learning_rate, make_image
from pytti_engine.image_params.vqgan import VQGANImage, latent_loss
from pytti_engine.io import load_image
from pytti_engine.losses import gated_loss, hsv_mse, prompt_loss, tv_loss
from pytti_engine.masks import image_mask_weights, position_mask_stop, text_mask_stop
from pytti_engine.motion import MotionFrame, MotionRuntime, apply_motion
from pytti_engine.perceptors import Perceptor
from pytti_engine.prompts import DirectTarget, PromptTargets, image_prompt_loss
from pytti_engine.state import RenderState, make_optimizer
from pytti_engine.types import BorderMode, PaddingMode, SamplingMode

if TYPE_CHECKING:
    from pytti_engine.image_params.vqgan import VQGANModel

GPU_CHECK_EVERY = 10
"""Optimizer steps between host reads of the loss (finiteness check, progress events) on a GPU."""

VQGAN_EMA_DECAY = 0.99
"""PyTTI's EMA decay of the VQGAN latent (``ema_val``), used when a vqgan scene leaves ``ema_decay`` unset."""


class MaskLike(Protocol):
    """What the renderer reads of a prompt's mask (``pytti_engine.scene.MaskValue``)."""

    @property
    def kind(self) -> str: ...
    @property
    def value(self) -> str: ...
    @property
    def inverted(self) -> bool: ...
    @property
    def cutoff(self) -> float | None: ...


class PromptLike(Protocol):
    """What the renderer reads of a resolved prompt (``pytti_engine.scene.PromptValue``)."""

    @property
    def text(self) -> str: ...
    @property
    def weight(self) -> float: ...
    @property
    def stop(self) -> float | None: ...
    @property
    def image(self) -> str | None: ...
    @property
    def mask(self) -> MaskLike | None: ...
    def weight_at(self, step: int) -> float:
        """The weight at optimizer step ``step`` (1-based) of the frame (``<= 0``: pre-animation)."""
        ...

    def stop_at(self, step: int) -> float | None:
        """The stop at optimizer step ``step`` (1-based) of the frame (``<= 0``: pre-animation)."""
        ...


class FrameLike(MotionFrame, Protocol):
    """What the renderer reads of one frame of the plan (``pytti_engine.scene.FramePlan``): its motion
    values (:class:`~pytti_engine.motion.MotionFrame`) and its resolved prompts."""

    @property
    def prompts(self) -> Sequence[PromptLike]: ...


@dataclass(frozen=True)
class RenderSettings:
    """The scene settings the engine needs, as plain values (one narrow config, not the whole scene)."""

    image: ImageConfig
    seed: int
    steps_per_frame: int
    learning_rate: float  # resolved: the scene's, or the image model's own when the scene says null
    cutouts: int
    cut_pow: float
    animation: str
    infill_mode: PaddingMode
    sampling_mode: SamplingMode
    init_image: Path | None = None
    target_palette: Path | None = None
    smoothing_weight: float = 0.0
    direct_init_weight: float = 0.0
    semantic_init_weight: float = 0.0
    direct_image_prompts: tuple[tuple[Path, float, float | None], ...] = ()
    reset_lr_each_frame: bool = False
    gradient_accumulation_steps: int = 1
    cutout_border: float = 0.25
    border_mode: BorderMode = "clamp"
    mixed_precision: bool = True
    pre_animation_steps: int = 0

    @classmethod
    def from_scene(cls, scene: Any) -> RenderSettings:
        """Pick the engine's settings out of a validated ``Scene``."""
        return cls(
            image=ImageConfig(
                image_model=scene.image_model,
                width=scene.width,
                height=scene.height,
                pixel_size=scene.pixel_size,
                palette_size=scene.palette_size,
                palettes=scene.palettes,
                gamma=scene.gamma,
                hdr_weight=scene.hdr_weight,
                palette_normalization_weight=scene.palette_normalization_weight,
                random_initial_palette=scene.random_initial_palette,
                lock_palette=scene.lock_palette,
                ema_decay=_ema_decay(scene),
                vqgan_model=_vqgan_name(scene),
                vqgan_warp=getattr(scene, "vqgan_warp", "pixels"),
            ),
            seed=scene.seed,
            steps_per_frame=scene.steps_per_frame,
            learning_rate=_learning_rate(scene),
            cutouts=scene.cutouts,
            cut_pow=scene.cut_pow,
            animation=scene.animation,
            infill_mode=scene.infill_mode,
            sampling_mode=scene.sampling_mode,
            init_image=None if scene.init_image is None else Path(scene.init_image),
            target_palette=scene.target_palette,
            smoothing_weight=scene.smoothing_weight,
            direct_init_weight=scene.direct_init_weight,
            semantic_init_weight=scene.semantic_init_weight,
            direct_image_prompts=tuple((Path(p.image), p.weight, p.stop) for p in scene.direct_image_prompts),
            reset_lr_each_frame=scene.reset_lr_each_frame,
            gradient_accumulation_steps=scene.gradient_accumulation_steps,
            cutout_border=scene.cutout_border,
            border_mode=scene.border_mode,
            mixed_precision=scene.mixed_precision,
            pre_animation_steps=scene.pre_animation_steps,
        )

    @property
    def image_config(self) -> ImageConfig:
        """The image model's config."""
        return self.image

    @property
    def width(self) -> int:
        """Output width in pixels."""
        return self.image.width

    @property
    def height(self) -> int:
        """Output height in pixels."""
        return self.image.height

    def cutout_config(self, cut_size: int) -> CutoutConfig:
        """The cutout config of one micro-batch for a perceptor with input size ``cut_size``."""
        return CutoutConfig(
            cutouts=self.cutouts // self.gradient_accumulation_steps,
            cut_pow=self.cut_pow,
            cut_size=cut_size,
            cutout_border=self.cutout_border,
            border_mode=self.border_mode,
        )

    def init_losses_active(self, frame_index: int) -> bool:
        """Whether ``direct_init_weight``/``semantic_init_weight`` act on a frame.

        As in PyTTI, where they act only before the first warp: on every frame without animation, on
        frame 1 only when the image moves between frames.
        """
        return self.animation == "off" or frame_index == 1

    def steps_of(self, frame_index: int) -> int:
        """Optimizer steps of a frame: ``steps_per_frame``, plus ``pre_animation_steps`` on frame 1."""
        return self.steps_per_frame + (self.pre_animation_steps if frame_index == 1 else 0)

    def fingerprint(self) -> dict[str, Any]:
        """JSON-friendly values that determine pixels (used in frame keys)."""
        d = dict(self.__dict__)
        d.update(d.pop("image").to_dict())  # flat, as the image settings are in the scene file
        d["init_image"] = str(self.init_image) if self.init_image else None
        d["target_palette"] = str(self.target_palette) if self.target_palette else None
        d["direct_image_prompts"] = [[str(p), w, s] for p, w, s in self.direct_image_prompts]
        if not self.pre_animation_steps:
            del d["pre_animation_steps"]  # keys of scenes without pre-animation stay as they were
        return d


def _ema_decay(scene: Any) -> float | None:
    """The scene's ``ema_decay``; a vqgan scene without one gets PyTTI's 0.99 (``0`` turns it off)."""
    if scene.image_model != "vqgan":
        return scene.ema_decay
    if scene.ema_decay is None:
        return VQGAN_EMA_DECAY
    return scene.ema_decay or None


def _learning_rate(scene: Any) -> float:
    """The scene's ``learning_rate``; ``null`` (the default) is the image model's own, as in PyTTI: the
    class's ``default_learning_rate`` (0.02 for both palettes), and for vqgan PyTTI's rate for its model
    (0.1, or 0.15 for a gumbel model such as openimages)."""
    if scene.learning_rate is not None:
        return float(scene.learning_rate)
    if scene.image_model != "vqgan":
        return default_learning_rate(scene.image_model)
    from pytti_engine.vqgan_files import KNOWN_VQGANS, read_vqgan_config

    model = scene.vqgan
    if isinstance(model, str):
        return 0.15 if KNOWN_VQGANS[model].gumbel else 0.1
    return read_vqgan_config(model.config).default_learning_rate


def _vqgan_name(scene: Any) -> str | None:
    """A vqgan scene's model name (``imagenet``, ...), ``custom`` for a file pair, else ``None``."""
    if scene.image_model != "vqgan":
        return None
    model = scene.vqgan
    return model if isinstance(model, str) else "custom"


@dataclass(frozen=True)
class StepEvent:
    """An optimizer step whose loss was read (every :func:`check_interval` steps and the frame's last)."""

    frame: int
    step: int  # 1-based within the frame
    steps: int
    loss: float
    losses: Mapping[str, float] = field(default_factory=dict)  # each named term of ``loss``
    learning_rate: float = 0.0


StepCallback = Callable[[StepEvent], None]


@dataclass(frozen=True)
class RenderContext:
    """Everything constant across frames: settings, loaded perceptors and prompt targets."""

    settings: RenderSettings
    perceptors: tuple[Perceptor, ...]
    perceptor_weights: tuple[float, ...]
    targets: PromptTargets
    device: torch.device
    motion: MotionRuntime | None = None  # depth model / source video / stabilization (pytti_engine.motion)
    vqgan: VQGANModel | None = None  # the loaded VQGAN of an image_model: vqgan scene
    check_every: int | None = None  # steps between loss reads; None: 1 on the CPU, GPU_CHECK_EVERY elsewhere


def check_interval(ctx: RenderContext) -> int:
    """Steps between host reads of the loss: ``ctx.check_every``, else 1 on the CPU and
    :data:`GPU_CHECK_EVERY` on other devices (where each read makes the host wait for the device)."""
    if ctx.check_every is not None:
        if ctx.check_every < 1:
            raise ValueError(f"check_every must be >= 1, got {ctx.check_every}")
        return ctx.check_every
    return 1 if ctx.device.type == "cpu" else GPU_CHECK_EVERY


def step_generator(ctx: RenderContext, frame_index: int) -> torch.Generator:
    """The generator of a frame's per-step randomness (cutouts, augmentation, noise): on the render
    device, seeded by (seed, frame, ``"steps"``), so no random number is made on the host and copied."""
    return make_generator(ctx.settings.seed, frame_index, "steps", device=ctx.device)


@dataclass(frozen=True)
class FrameResult:
    """What :func:`render_frame` returns.

    Attributes:
        state: the state after this frame (the same object that was passed in, advanced).
        image: (1, 3, H, W) output image in [0, 1] (the EMA when enabled), detached.
        loss: the total loss of the frame's last step (``nan`` when no step ran).
        seconds: wall time of the frame.
    """

    state: RenderState
    image: Tensor
    loss: float
    seconds: float


class OutOfMemoryError(PyttiError):
    """The device ran out of memory during a step; the message names the settings that reduce it."""


def initial_state(ctx: RenderContext) -> RenderState:
    """The state before frame 1: the init image, or noise drawn from (seed, frame 0)."""
    s = ctx.settings
    gen = make_generator(s.seed, 0, "init")
    init = None
    if s.init_image is not None:
        init = load_image(s.init_image, (s.width, s.height), device=ctx.device)
    elif ctx.motion is not None:
        init = ctx.motion.initial_image()  # video mode: the first source frame
    image = make_image(s.image_config, gen, ctx.device, init, ctx.vqgan)
    if s.target_palette is not None and isinstance(image, PaletteImage):
        image.set_target_palette(load_image(s.target_palette, (s.width, s.height), device=ctx.device), gen)
    return RenderState(image=image, optimizer=make_optimizer(image, s.learning_rate))


def _autocast(ctx: RenderContext) -> contextlib.AbstractContextManager[Any]:
    """bf16 autocast for the perceptor forward on CUDA (when ``mixed_precision``), else nothing."""
    if ctx.device.type == "cuda" and ctx.settings.mixed_precision:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _prompt_term(
    prompt: PromptLike,
    weight: float,
    stop: float | None,
    embeds: Tensor,
    cuts: Cutouts,
    index: int,
    targets: PromptTargets,
    frame: int,
) -> Tensor:
    """One prompt's loss on one perceptor's cutouts (mask and image prompt included).

    ``weight`` and ``stop`` are the step's values; ``frame`` (1-based) picks a video mask's frame.
    """
    mask, mask_stop = prompt.mask, None
    w: float | Tensor = weight
    if mask is not None:
        if mask.kind == "position":
            mask_stop = position_mask_stop(mask.value, cuts.offsets, cuts.sizes, mask.cutoff)
        elif mask.kind == "text":
            mask_stop = text_mask_stop(embeds, targets.lookup(index, mask.value), mask.cutoff)
        elif mask.kind in ("image", "video"):
            picture = targets.mask_for(mask.kind, mask.value, mask.inverted, frame)
            w = weight * image_mask_weights(picture, cuts.offsets, cuts.sizes)
        else:
            raise PyttiError(f"prompt {prompt.text!r}: {mask.kind} masks are not supported by this engine")
    if prompt.image is not None:
        return image_prompt_loss(targets.images[prompt.image], index, embeds, cuts, w, stop, mask_stop)
    return prompt_loss(embeds, targets.lookup(index, prompt.text), w, stop, mask_stop)


def _note(terms: dict[str, Tensor] | None, name: str, value: Tensor, scale: float = 1.0) -> None:
    """Add a detached loss term to ``terms`` (the per-term breakdown reported in :class:`StepEvent`)."""
    if terms is not None:
        terms[name] = terms.get(name, value.new_zeros(())) + value.detach() * scale


def perceptor_loss(
    image: Tensor,
    frame: FrameLike,
    ctx: RenderContext,
    gen: torch.Generator,
    step: int = 1,
    terms: dict[str, Tensor] | None = None,
) -> Tensor:
    """Prompt loss of one micro-batch: every perceptor, its own cutouts, every prompt of the frame.

    Perceptor losses are combined by their relative weights (normalized to sum 1). Prompt weights and
    stops are the plan's values at ``step`` (they move within a frame when they read ``t``).

    Args:
        image: (1, 3, H, W) the decoded image.
        frame: this frame of the plan.
        ctx: the render context.
        gen: the step generator.
        step: the optimizer step within the frame (1-based).
        terms: when given, each named term is added to it (detached), for reporting.

    Returns:
        Scalar loss.
    """
    total = image.new_zeros(())
    norm = sum(abs(w) for w in ctx.perceptor_weights) or 1.0
    semantic_init = (
        ctx.targets.init_image
        if ctx.targets.init_image is not None
        and ctx.settings.semantic_init_weight
        and ctx.settings.init_losses_active(frame.index)
        else None
    )
    weighted = ((p, p.weight_at(step), p.stop_at(step)) for p in frame.prompts)
    active = [(p, w, s) for p, w, s in weighted if w != 0]
    stabilizer = ctx.motion.stabilizer if ctx.motion is not None else None
    semantic_stab = stabilizer is not None and stabilizer.wants_semantic(frame.index)
    if not active and semantic_init is None and not semantic_stab:
        return total
    for i, perceptor in enumerate(ctx.perceptors):
        cuts = sample_cutouts(image, ctx.settings.cutout_config(perceptor.input_size), gen)
        with _autocast(ctx):
            embeds = perceptor.encode_image(cuts.images)
        embeds = embeds.float()
        share = ctx.perceptor_weights[i] / norm
        for prompt, weight, stop in active:
            term = _prompt_term(prompt, weight, stop, embeds, cuts, i, ctx.targets, frame.index)
            total = total + share * term
            _note(terms, f"prompt/{prompt.text}", term, share)
        if semantic_init is not None:
            weight = ctx.settings.semantic_init_weight
            term = image_prompt_loss(semantic_init, i, embeds, cuts, weight, None)
            total = total + share * term
            _note(terms, "init/semantic", term, share)
        semantic = None
        if stabilizer is not None:
            target_cuts = replace(
                ctx.settings.cutout_config(perceptor.input_size), cutouts=ctx.settings.cutouts
            )
            semantic = stabilizer.semantic(frame.index, i, embeds, cuts, perceptor, target_cuts)
        if semantic is not None:
            total = total + share * semantic
            _note(terms, "stabilization/semantic", semantic, share)
    return total


def _direct_loss(image: Tensor, target: DirectTarget, model: ImageParam) -> Tensor:
    """A direct target's gated loss: HSV error, or PyTTI's LatentLoss for a VQGAN target."""
    if target.latent is not None and isinstance(model, VQGANImage):
        value = latent_loss(model, image, target.latent, target.hsv[:, :3]).reshape(1)
    else:
        value = hsv_mse(image, target.hsv).reshape(1)
    return gated_loss(value, target.weight, target.stop)


def image_loss(
    image: Tensor,
    model: ImageParam,
    frame: FrameLike,
    ctx: RenderContext,
    terms: dict[str, Tensor] | None = None,
) -> Tensor | None:
    """The image-level losses of a step (computed once per step, not per micro-batch).

    TV smoothing (``smoothing_weight``), direct image prompts, the direct init loss, and the image
    model's own regularisers (palette losses).

    Args:
        image: (1, 3, H, W) the decoded image.
        model: the image model (for its regularisers).
        frame: this frame of the plan.
        ctx: the render context.
        terms: when given, each named term is added to it (detached), for reporting.

    Returns:
        Scalar loss, or ``None`` when there is none.
    """
    s, named = ctx.settings, []
    if s.smoothing_weight:
        named.append(("smoothing", s.smoothing_weight * tv_loss(image)))
    named += [
        (f"direct/{i}", _direct_loss(image, t, model)) for i, t in enumerate(ctx.targets.direct) if t.weight
    ]
    init = ctx.targets.init_direct
    if init is not None and init.weight and s.init_losses_active(frame.index):
        named.append(("init/direct", _direct_loss(image, init, model)))
    regularization = model.regularization()
    if regularization is not None:
        named.append(("image_model", regularization))
    stabilizer = ctx.motion.stabilizer if ctx.motion is not None else None
    stabilization = stabilizer.pixel_loss(image, frame.index, model) if stabilizer is not None else None
    if stabilization is not None:  # direct / edge / depth / flow stabilization (pytti_engine.stabilization)
        named.append(("stabilization/pixel", stabilization))
    if not named:
        return None
    for name, term in named:
        _note(terms, name, term)
    total = named[0][1]
    for _, term in named[1:]:
        total = total + term
    return total


def optimize_step(
    state: RenderState,
    frame: FrameLike,
    ctx: RenderContext,
    gen: torch.Generator,
    step: int = 1,
    terms: dict[str, Tensor] | None = None,
) -> Tensor:
    """One optimizer step in place (see the module docstring); returns the step's total loss.

    ``step`` (1-based, within the frame) selects the prompts' per-step weights and stops; ``terms``,
    when given, receives each named loss term (detached).

    Returns:
        The loss as a detached 0-dim tensor on the device; it is not read here (reading it waits for
        the device), so a non-finite loss is the caller's to check (:func:`optimize_frame` does).

    Raises:
        OutOfMemoryError: the device ran out of memory.
    """
    try:
        return _optimize_step(state, frame, ctx, gen, step, terms)
    except torch.OutOfMemoryError as e:
        raise OutOfMemoryError(_oom_message(ctx, e)) from e
    except RuntimeError as e:
        if "can't allocate memory" not in str(e) and "out of memory" not in str(e):
            raise
        raise OutOfMemoryError(_oom_message(ctx, e)) from e


def _oom_message(ctx: RenderContext, error: BaseException) -> str:
    s = ctx.settings
    names = ", ".join(p.name for p in ctx.perceptors)
    return (
        f"out of memory on {ctx.device} ({type(error).__name__}) rendering {s.width}x{s.height} with "
        f"cutouts: {s.cutouts}, gradient_accumulation_steps: {s.gradient_accumulation_steps}, "
        f"perceptors: {names}. To use less memory: raise gradient_accumulation_steps (it must divide "
        "cutouts), lower cutouts, lower width/height, use fewer or smaller perceptors, or keep "
        "mixed_precision: true on CUDA."
    )


def _optimize_step(
    state: RenderState,
    frame: FrameLike,
    ctx: RenderContext,
    gen: torch.Generator,
    step: int,
    terms: dict[str, Tensor] | None,
) -> Tensor:
    image = state.image
    state.optimizer.zero_grad(set_to_none=True)
    decoded = image.decode()
    # The micro-batches' gradients accumulate on a detached copy, so the image model is decoded and
    # back-propagated once per step whatever gradient_accumulation_steps is.
    leaf = decoded.detach().requires_grad_(True)
    micro = ctx.settings.gradient_accumulation_steps
    value = decoded.new_zeros(())
    for _ in range(micro):
        micro_terms: dict[str, Tensor] | None = {} if terms is not None else None
        loss = perceptor_loss(leaf, frame, ctx, gen, step, micro_terms) / micro
        if loss.requires_grad:
            loss.backward()
        value = value + loss.detach()
        for name, term in (micro_terms or {}).items():
            _note(terms, name, term, 1.0 / micro)
    extra = image_loss(decoded, image, frame, ctx, terms)
    outputs: list[Tensor] = []
    grads: list[Tensor | None] = []
    if leaf.grad is not None and decoded.requires_grad:
        outputs.append(decoded)
        grads.append(leaf.grad)
    if extra is not None:
        value = value + extra.detach()
        if extra.requires_grad:
            outputs.append(extra)
            grads.append(None)
    if outputs:
        torch.autograd.backward(outputs, grads)
    state.optimizer.step()
    image.project_()
    image.update_average_()
    state.step += 1
    return value


def optimize_frame(
    state: RenderState, frame: FrameLike, ctx: RenderContext, on_step: StepCallback | None = None
) -> float:
    """Run the frame's optimizer steps in place; returns the last step's loss (``nan`` if none ran).

    Frame 1 first runs ``pre_animation_steps`` steps, then its ``steps_per_frame`` (PyTTI's pre-animation:
    they come before the first camera move). The prompts see the pre-animation steps as steps
    ``1 - pre_animation_steps .. 0`` of the frame, so a weight or stop that reads ``t`` is evaluated at
    ``t < 0`` there, as in PyTTI. Step events count the frame's steps from 1 either way.

    The loss is read from the device only every :func:`check_interval` steps and at the last step; each
    read checks the steps since the previous one and ``on_step`` is called then (with the named terms of
    that step). The frame's step generator (:func:`step_generator`) is kept in ``state.step_generator``.

    Raises:
        PyttiError: a step's loss is not finite (the message names the frame and the steps checked).
        OutOfMemoryError: the device ran out of memory.
    """
    s = ctx.settings
    steps = s.steps_of(frame.index) if _has_losses(frame, ctx) else 0
    pre = s.steps_of(frame.index) - s.steps_per_frame
    gen = step_generator(ctx, frame.index)
    state.step_generator = gen
    every = check_interval(ctx)
    loss_value = float("nan")
    window: Tensor | None = None  # sum of the losses since the last read: not finite iff one of them was
    first = 1
    for n in range(1, steps + 1):
        read = n % every == 0 or n == steps
        terms: dict[str, Tensor] | None = {} if on_step is not None and read else None
        value = optimize_step(state, frame, ctx, gen, n - pre, terms)
        window = value if window is None else window + value
        if not read:
            continue
        loss_value, losses = _read_loss(value, window, terms or {}, frame.index, (first, n))
        window, first = None, n + 1
        if on_step is not None:
            lr = float(state.optimizer.param_groups[0]["lr"])
            on_step(
                StepEvent(
                    frame=frame.index, step=n, steps=steps, loss=loss_value, losses=losses, learning_rate=lr
                )
            )
    return loss_value


def _read_loss(
    value: Tensor, window: Tensor, terms: Mapping[str, Tensor], frame: int, steps: tuple[int, int]
) -> tuple[float, dict[str, float]]:
    """Read a step's loss, its named terms and the window's sum in one transfer; fail on a non-finite sum.

    Args:
        value: the step's loss (0-dim).
        window: the sum of the losses of steps ``steps[0]..steps[1]`` (0-dim).
        terms: the step's named terms (0-dim each).
        frame: the frame index (for the message).
        steps: the first and last step (1-based) of the window.

    Returns:
        The loss and the terms as floats.

    Raises:
        PyttiError: the window had a NaN or infinite loss.
    """
    names = list(terms)
    numbers = torch.stack([value.float(), window.float(), *(terms[n].float() for n in names)]).tolist()
    loss, total = numbers[0], numbers[1]
    if not math.isfinite(total):
        first, last = steps
        where = f"step {last}" if first == last else f"one of steps {first}..{last}"
        raise PyttiError(
            f"frame {frame}: the loss is not finite in {where} (the loss at step {last} is {loss}); "
            "lower learning_rate or check the prompts' weights"
        )
    return loss, dict(zip(names, numbers[2:], strict=True))


def _has_losses(frame: FrameLike, ctx: RenderContext) -> bool:
    """Whether a frame has anything to optimize (prompts, direct targets or init losses)."""
    s = ctx.settings
    init = s.init_losses_active(frame.index) and bool(s.direct_init_weight or s.semantic_init_weight)
    return bool(frame.prompts) or bool(ctx.targets.direct) or init


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
        The advanced state, the output image and the last loss.
    """
    start = time.perf_counter()
    # 1. Start from the previous frame, or the initial image.
    if state is None:
        state = initial_state(ctx)
    else:
        # 2. Fresh Adam moments if asked (before the warp, so there are no moments to move), then motion
        #    (frame 1 shows the initial image unmoved).
        if ctx.settings.reset_lr_each_frame:
            state.optimizer = make_optimizer(state.image, ctx.settings.learning_rate)
        apply_motion(state, frame, ctx.settings, ctx.motion)
    # 3. Optimize.
    loss = optimize_frame(state, frame, ctx, on_step)
    state.frame = frame.index
    image = state.image.decode_output()
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
