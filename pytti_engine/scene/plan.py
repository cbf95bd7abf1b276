"""The per-frame plan: every time-varying value of a scene resolved for every frame.

The same plan feeds the renderer, ``pytti plan`` and ``pytti validate``. Conventions:

* frames are numbered from 1 (``index``, the file ``frames/000001.png``); expressions see the 0-based
  ``frame = index - 1`` and ``t = frame / fps`` seconds, so the first frame has ``t = 0``;
* ``scene_frame`` / ``scene_t`` count from the first frame of the current scene;
* a scene with ``transition_frames = T`` blends from the previous scene over its first T frames: at its
  k-th frame (k = 0 .. T-1) the current prompts' weights are multiplied by ``tau = (k + 1) / (T + 1)`` and
  the previous scene's prompts (evaluated at the same frame) by ``1 - tau``, so both are present in every
  transition frame and the blend is symmetric;
* with ``animation: off`` the motion values are the identity (0, 0, 0, 1) whatever the motion keys say;
* prompt weights and stops are re-evaluated at every optimizer step, as in PyTTI: step ``s`` (1-based) of
  a frame sees ``t = frame / fps + (s - 1) / (steps_per_frame * fps)`` (and ``scene_t`` moved by the
  same amount; ``frame``, ``scene_frame`` and the audio bands stay the frame's), so step 1 has the
  frame's own time. A prompt whose weight or stop reads ``t`` or ``scene_t`` carries a
  :class:`StepSchedule` (``PromptValue.weight_at(step)`` / ``stop_at(step)`` evaluate it; ``to_dict``
  lists the moving expressions and the blend factor, so they enter the frame keys); any other prompt is
  constant within the frame and its ``to_dict`` is unchanged. A transition's ``tau`` is the frame's,
  applied to every step's weight. The plan evaluates a moving value at the first and the last step of
  every frame (so ``pytti validate`` reports a value that fails as time runs on); the steps in between
  are evaluated when the renderer reaches them;
* ``pre_animation_steps: P`` gives frame 1 ``P`` extra steps before its own, numbered ``1 - P .. 0``:
  they see ``t = (s - 1) / (steps_per_frame * fps) < 0``, PyTTI's ``t`` during pre-animation (the plan
  checks moving values at the first of them too).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from pytti_engine.errors import PyttiError, SceneError, SceneErrors
from pytti_engine.scene.expr import Expr, ExprEvalError, Interpolation
from pytti_engine.scene.prompt_dsl import ImageMask, Mask, PositionMask, PromptSpec, TextMask, VideoMask
from pytti_engine.scene.schema import Scene

if TYPE_CHECKING:
    from pytti_engine.audio import AudioBands

MaskKind = Literal["position", "text", "image", "video"]
MOTION_KEYS = ("translate_x", "translate_y", "rotate_2d", "zoom")
STEP_NAMES = frozenset({"t", "scene_t"})
"""The expression variables that move within a frame (every optimizer step)."""


@dataclass(frozen=True)
class MaskValue:
    """A prompt's mask with its cutoff resolved for one frame.

    Attributes:
        kind: ``position`` (value is one of ``l r u d n f``), ``text`` (value is the mask text),
            ``image`` or ``video`` (value is the absolute path or URL).
        value: see ``kind``.
        inverted: image/video masks only: use ``1 - mask``.
        cutoff: positional/text masks: the threshold for this frame, or ``None`` for the default.
    """

    kind: MaskKind
    value: str
    inverted: bool = False
    cutoff: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {"kind": self.kind, "value": self.value, "inverted": self.inverted, "cutoff": self.cutoff}


@dataclass(frozen=True)
class StepSchedule:
    """How a prompt's weight and stop move within one frame (re-evaluated at every optimizer step).

    Step ``s`` (1-based) of ``steps`` sees the frame's inputs with ``t`` and ``scene_t`` advanced by
    ``(s - 1) / (steps * fps)``.

    Attributes:
        weight: the weight's expression when it moves within the frame, else ``None``.
        stop: the stop's expression when it moves within the frame, else ``None``.
        scale: the transition blend factor the weight is multiplied by (1 outside transitions).
        env: the frame's expression inputs (``t``, ``frame``, ``scene_t``, ``scene_frame``, ``fps``, bands).
        steps: ``steps_per_frame``.
        interpolation: the scene's ``keyframe_interpolation``.
    """

    weight: Expr | None
    stop: Expr | None
    scale: float
    env: tuple[tuple[str, float], ...]
    steps: int
    interpolation: Interpolation = "linear"

    def env_at(self, step: int) -> dict[str, float]:
        """The expression inputs of step ``step`` (1-based; ``<= 0`` are frame 1's pre-animation steps,
        at ``t < 0``)."""
        if step > self.steps:
            raise ValueError(
                f"step {step} is outside the frame's steps (..{self.steps}; <= 0: pre-animation)"
            )
        env = dict(self.env)
        offset = (step - 1) / (self.steps * env["fps"])
        env["t"] += offset
        env["scene_t"] += offset
        return env

    def evaluate(self, expr: Expr, step: int, what: str) -> float:
        """``expr`` at step ``step``.

        Raises:
            SceneError: the expression fails at that step (division by zero, domain error, ...), located at
                the expression and naming the frame, the step and ``t``.
        """
        env = self.env_at(step)
        try:
            return expr.evaluate(env, self.interpolation)
        except ExprEvalError as e:
            raise _eval_error(expr, "<scene>", what, e, env, step) from None

    def to_dict(self) -> dict[str, Any]:
        """The moving expressions and the blend factor (what the frame keys need beyond the frame's values)."""
        out: dict[str, Any] = {"scale": self.scale}
        if self.weight is not None:
            out["weight"] = self.weight.source.strip()
        if self.stop is not None:
            out["stop"] = self.stop.source.strip()
        return out


@dataclass(frozen=True)
class PromptValue:
    """A prompt with its weight and stop resolved for one frame (transition blending included).

    Attributes:
        text: the prompt text (for an image prompt, the bracketed source as written).
        weight: the weight at the frame's time (its first step); negative pushes away, 0 contributes
            nothing.
        stop: the stop at the frame's time, or ``None``.
        image: for a semantic image prompt, the absolute path or URL of the image.
        mask: the mask, or ``None`` for all cutouts.
        per_step: when the weight or the stop moves within the frame (reads ``t`` or ``scene_t``), how;
            else ``None``. Step 1's values are ``weight`` and ``stop``.
    """

    text: str
    weight: float
    stop: float | None
    image: str | None = None
    mask: MaskValue | None = None
    per_step: StepSchedule | None = None

    def weight_at(self, step: int) -> float:
        """The weight at optimizer step ``step`` (1-based) of the frame (transition blend included).

        Raises:
            SceneError: the weight's expression fails at that step.
        """
        schedule = self.per_step
        if schedule is None or schedule.weight is None:
            return self.weight
        return schedule.evaluate(schedule.weight, step, "prompt weight") * schedule.scale

    def stop_at(self, step: int) -> float | None:
        """The stop at optimizer step ``step`` (1-based) of the frame, or ``None``.

        Raises:
            SceneError: the stop's expression fails at that step.
        """
        schedule = self.per_step
        if schedule is None or schedule.stop is None:
            return self.stop
        return schedule.evaluate(schedule.stop, step, "prompt stop")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (``per_step`` only for a prompt whose values move within the frame)."""
        out: dict[str, Any] = {
            "text": self.text,
            "weight": self.weight,
            "stop": self.stop,
            "image": self.image,
            "mask": None if self.mask is None else self.mask.to_dict(),
        }
        if self.per_step is not None:
            out["per_step"] = self.per_step.to_dict()
        return out


@dataclass(frozen=True)
class FramePlan:
    """Everything that varies per frame, resolved."""

    index: int
    t: float
    scene_index: int
    prompts: tuple[PromptValue, ...]
    translate_x: float
    translate_y: float
    rotate_2d: float
    zoom: float
    # ---- motion values (issue 4, docs/motion.md); to_dict lists them only when not at their default,
    # so the frame keys of scenes that do not use them stay as they were.
    zoom_x: float = 1.0
    zoom_y: float = 1.0
    translate_z: float = 0.0
    rotate_3d: tuple[float, ...] = (0.0, 0.0, 0.0)  # [x, y, z] degrees, or a quaternion [w, x, y, z]
    stabilization: tuple[tuple[str, float], ...] = ()  # (loss name, weight) for every non-zero weight
    bands: tuple[tuple[str, float], ...] = ()  # audio band values in [0, 1] (issue 7; docs/outputs.md)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        out: dict[str, Any] = {
            "index": self.index,
            "t": self.t,
            "scene_index": self.scene_index,
            "prompts": [p.to_dict() for p in self.prompts],
            "translate_x": self.translate_x,
            "translate_y": self.translate_y,
            "rotate_2d": self.rotate_2d,
            "zoom": self.zoom,
        }
        extra = {
            "zoom_x": self.zoom_x,
            "zoom_y": self.zoom_y,
            "translate_z": self.translate_z,
            "rotate_3d": list(self.rotate_3d),
            "stabilization": dict(self.stabilization),
        }
        defaults = {
            "zoom_x": 1.0,
            "zoom_y": 1.0,
            "translate_z": 0.0,
            "rotate_3d": [0.0] * 3,
            "stabilization": {},
        }
        out.update({k: v for k, v in extra.items() if v != defaults[k]})
        if self.bands:
            out["bands"] = dict(self.bands)
        return out


@dataclass(frozen=True)
class Plan:
    """The whole animation, frame by frame."""

    fps: float
    frames: tuple[FramePlan, ...]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {"fps": self.fps, "frames": [f.to_dict() for f in self.frames]}

    def to_json(self) -> str:
        """The plan as JSON (what the run directory stores as ``plan.json``)."""
        return json.dumps(self.to_dict(), indent=1, allow_nan=False)


class _Evaluator:
    """Evaluates expressions for the plan, recording the first failure of each expression."""

    def __init__(self, scene: Scene, name: str) -> None:
        self.interpolation = scene.keyframe_interpolation
        self.name = name
        self.failed: dict[int, SceneError] = {}

    def __call__(self, expr: Expr, env: dict[str, float], what: str, step: int | None = None) -> float:
        if expr.is_constant:
            return expr.value
        if id(expr) in self.failed:
            return 0.0
        try:
            return expr.evaluate(env, self.interpolation)
        except ExprEvalError as e:
            self.failed[id(expr)] = _eval_error(expr, self.name, what, e, env, step)
            return 0.0


def _eval_error(
    expr: Expr, name: str, what: str, error: ExprEvalError, env: dict[str, float], step: int | None
) -> SceneError:
    """The located error of an expression that failed at a frame (and optimizer step)."""
    ref = expr.ref
    where = f"frame {int(env['frame']) + 1}"
    if step is not None:
        where += f", step {step}" + (" (pre-animation)" if step <= 0 else "")
    message = f"{what}: {error} at {where} (t={env['t']:g}s) in {expr.source.strip()!r}"
    return SceneError(ref.path if ref else name, ref.line if ref else None, ref.col if ref else None, message)


def build_plan(scene: Scene, *, name: str = "<scene>", bands: AudioBands | None = None) -> Plan:
    """Resolve every value of ``scene`` for every frame.

    Args:
        scene: a validated scene.
        name: the scene's name for errors in values that have no file position.
        bands: the audio bands of ``input_audio``; by default they are analysed (or read from the
            analysis cache) here, see :mod:`pytti_engine.audio`.

    Returns:
        The plan (frames numbered from 1).

    Raises:
        SceneError: an expression fails for some frame (division by zero, math domain error, overflow,
            a zoom that is not positive); ``SceneErrors`` lists the first failure of each expression.
    """
    evaluate = _Evaluator(scene, name)
    counts = scene.stage_frame_counts()
    fps = float(scene.fps)
    steps = int(scene.steps_per_frame)
    frames: list[FramePlan] = []
    audio = bands if bands is not None else _scene_bands(scene, name)
    for scene_index, (stage, count) in enumerate(zip(scene.scenes, counts, strict=True)):
        previous = scene.scenes[scene_index - 1].prompts if scene_index > 0 else ()
        for k in range(count):
            frame = len(frames)
            env = {
                "t": frame / fps,
                "frame": float(frame),
                "scene_t": k / fps,
                "scene_frame": float(k),
                "fps": fps,
            }
            band_env = audio.at(frame) if audio is not None else {}
            env.update(band_env)
            tau = (k + 1) / (stage.transition_frames + 1) if k < stage.transition_frames else 1.0
            pre = int(scene.pre_animation_steps) if frame == 0 else 0
            timing = _StepTiming(env, steps, evaluate.interpolation, pre)
            prompts = _blend(stage.prompts, previous, timing, tau, evaluate)
            motion = _motion(scene, env, evaluate)
            camera = _camera(scene, env, evaluate)
            band_values = tuple((n, band_env[n]) for n in audio.names) if audio is not None else ()
            frames.append(
                FramePlan(frame + 1, env["t"], scene_index, prompts, *motion, **camera, bands=band_values)
            )
    if evaluate.failed:
        errors = sorted(evaluate.failed.values(), key=lambda e: (e.line or 0, e.col or 0))
        raise errors[0] if len(errors) == 1 else SceneErrors(errors)
    return Plan(fps=fps, frames=tuple(frames))


def _scene_bands(scene: Scene, name: str) -> AudioBands | None:
    """The scene's audio bands through the analysis cache (issue 7), or ``None`` without filters."""
    if scene.input_audio is None or not scene.input_audio_filters:
        return None
    from pytti_engine.audio import scene_bands

    try:
        return scene_bands(scene)
    except PyttiError as e:
        raise SceneError(name, None, None, f"input_audio: {e}") from None


class _StepTiming:
    """A frame's expression inputs and what its prompts need to move within the frame."""

    def __init__(self, env: dict[str, float], steps: int, interpolation: Interpolation, pre: int = 0) -> None:
        self.env = env
        self.steps = steps
        self.interpolation = interpolation
        self.pre = pre  # frame 1's pre-animation steps (steps 1 - pre .. 0)
        self._frozen: tuple[tuple[str, float], ...] | None = None
        self._last: dict[str, float] | None = None

    def moves(self, expr: Expr | None) -> bool:
        """Whether ``expr`` moves within the frame (so it is re-evaluated at every step)."""
        if expr is None or expr.is_constant or self.steps + self.pre <= 1:
            return False
        return bool(expr.names & STEP_NAMES)

    def last_env(self) -> dict[str, float]:
        """The inputs of the frame's last step."""
        if self._last is None:
            self._last = self.schedule(None, None, 1.0).env_at(self.steps)
        return self._last

    def pre_env(self) -> dict[str, float] | None:
        """The inputs of the first pre-animation step (frame 1 only), or ``None``."""
        return self.schedule(None, None, 1.0).env_at(1 - self.pre) if self.pre else None

    def schedule(self, weight: Expr | None, stop: Expr | None, scale: float) -> StepSchedule:
        """A :class:`StepSchedule` over this frame (the frame's inputs shared by all its prompts)."""
        if self._frozen is None:
            self._frozen = tuple(self.env.items())
        return StepSchedule(weight, stop, scale, self._frozen, self.steps, self.interpolation)


def _blend(
    current: tuple[PromptSpec, ...],
    previous: tuple[PromptSpec, ...],
    timing: _StepTiming,
    tau: float,
    evaluate: _Evaluator,
) -> tuple[PromptValue, ...]:
    """Current prompts scaled by ``tau`` and the previous scene's by ``1 - tau`` (at every step).

    A prompt present in both scenes (e.g. from ``scene_prefix``) is not blended: it keeps its weight.
    """
    if tau >= 1.0:
        return _prompts(current, timing, 1.0, evaluate)
    shared = set(current) & set(previous)
    values = [_prompts((spec,), timing, 1.0 if spec in shared else tau, evaluate)[0] for spec in current]
    values += _prompts(tuple(p for p in previous if p not in shared), timing, 1.0 - tau, evaluate)
    return tuple(values)


def _prompts(
    specs: tuple[PromptSpec, ...], timing: _StepTiming, scale: float, evaluate: _Evaluator
) -> tuple[PromptValue, ...]:
    env = timing.env
    out = []
    for spec in specs:
        weight = evaluate(spec.weight, env, "prompt weight") * scale
        stop = None if spec.stop is None else evaluate(spec.stop, env, "prompt stop")
        per_step = None
        moving_weight = spec.weight if timing.moves(spec.weight) else None
        moving_stop = spec.stop if timing.moves(spec.stop) else None
        if moving_weight is not None or moving_stop is not None:
            per_step = timing.schedule(moving_weight, moving_stop, scale)
            # Step 1 is the frame's time; check the last step (and the first pre-animation step) too.
            checks = [(timing.last_env(), timing.steps)]
            first_pre = timing.pre_env()
            if first_pre is not None:
                checks.append((first_pre, 1 - timing.pre))
            for check_env, step in checks:
                if moving_weight is not None:
                    evaluate(moving_weight, check_env, "prompt weight", step)
                if moving_stop is not None:
                    evaluate(moving_stop, check_env, "prompt stop", step)
        mask = None if spec.mask is None else _mask(spec.mask, env, evaluate)
        out.append(PromptValue(spec.text, weight, stop, spec.image, mask, per_step))
    return tuple(out)


def _mask(mask: Mask, env: dict[str, float], evaluate: _Evaluator) -> MaskValue:
    if isinstance(mask, PositionMask | TextMask):
        cutoff = None if mask.cutoff is None else evaluate(mask.cutoff, env, "mask cutoff")
        if isinstance(mask, PositionMask):
            return MaskValue("position", mask.side, cutoff=cutoff)
        return MaskValue("text", mask.text, cutoff=cutoff)
    kind: MaskKind = "image" if isinstance(mask, ImageMask) else "video"
    assert isinstance(mask, ImageMask | VideoMask)
    return MaskValue(kind, mask.path, inverted=mask.inverted)


def _motion(scene: Scene, env: dict[str, float], evaluate: _Evaluator) -> tuple[float, float, float, float]:
    if scene.animation == "off":
        return (0.0, 0.0, 0.0, 1.0)
    zoom = evaluate(scene.zoom, env, "zoom")
    if zoom <= 0 and id(scene.zoom) not in evaluate.failed:
        ref = scene.zoom.ref
        message = (
            f"zoom: must be > 0 (a scale factor per frame), got {zoom:g} at frame {int(env['frame']) + 1}"
        )
        path = ref.path if ref else evaluate.name
        evaluate.failed[id(scene.zoom)] = SceneError(
            path, ref.line if ref else None, ref.col if ref else None, message
        )
    return (
        evaluate(scene.translate_x, env, "translate_x"),
        evaluate(scene.translate_y, env, "translate_y"),
        evaluate(scene.rotate_2d, env, "rotate_2d"),
        zoom,
    )


STABILIZATION_LOSSES = ("direct", "semantic", "edge", "depth", "flow")


def _camera(scene: Scene, env: dict[str, float], evaluate: _Evaluator) -> dict[str, Any]:
    """Per-axis zoom (2d), the 3D camera (3d) and the stabilization weights of one frame."""
    out: dict[str, Any] = {}
    if scene.animation == "2d":
        out["zoom_x"] = evaluate(scene.zoom_x, env, "zoom_x")
        out["zoom_y"] = evaluate(scene.zoom_y, env, "zoom_y")
        for key in ("zoom_x", "zoom_y"):
            expr = getattr(scene, key)
            if out[key] <= 0 and id(expr) not in evaluate.failed:
                ref = expr.ref
                message = f"{key}: must be > 0, got {out[key]:g} at frame {int(env['frame']) + 1}"
                path = ref.path if ref else evaluate.name
                evaluate.failed[id(expr)] = SceneError(
                    path, ref.line if ref else None, ref.col if ref else None, message
                )
    if scene.animation == "3d":
        out["translate_z"] = evaluate(scene.translate_z, env, "translate_z")
        out["rotate_3d"] = tuple(evaluate(e, env, "rotate_3d") for e in scene.rotate_3d)
    weights = (
        (name, evaluate(getattr(scene.stabilization, name), env, name)) for name in STABILIZATION_LOSSES
    )
    out["stabilization"] = tuple((name, w) for name, w in weights if w != 0)
    return out
