"""TensorBoard metrics of a render: per-step losses and learning rate, frame timings, sampled images.

A :class:`MetricsWriter` is fed the same records the renderer already sends out (``on_step`` events,
frame results); it never reaches into the renderer. What it writes (``tensorboard --logdir RUN/tensorboard``):

- ``loss/total`` every step the renderer reports (every step on the CPU, every 10th and the frame's last
  on a GPU: ``pytti_engine.render.check_interval``), and ``loss/<name>`` for every entry of the event's ``losses`` mapping
  (each prompt, each stabilization term), when the event carries one;
- ``learning_rate`` every step, from the event's ``learning_rate`` or the writer's fixed rate;
- ``time/frame_seconds`` and ``loss/frame_last`` once per frame;
- ``image`` on frame 1 and every ``image_every`` frames.

The x axis is the global step ``(frame - 1) * steps_per_frame + step``, so a resumed render logs
re-rendered frames at the same positions. Scalars are flushed at the end of every frame.

TensorBoard is an optional extra (``pip install 'pytti-flow[metrics]'``); it is imported only when a
writer is created. Nothing here draws plots (no matplotlib) or touches a notebook.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

import numpy as np

from pytti_engine.errors import PyttiError

INSTALL_HINT = "tensorboard: true needs the metrics extra: pip install 'pytti-flow[metrics]' (or tensorboard)"


class StepRecord(Protocol):
    """What the writer reads of a step event (``pytti_engine.render.StepEvent``).

    Optional attributes read when present: ``losses`` (``Mapping[str, float]``, one entry per loss
    term) and ``learning_rate`` (``float``).
    """

    @property
    def frame(self) -> int: ...
    @property
    def step(self) -> int: ...
    @property
    def steps(self) -> int: ...
    @property
    def loss(self) -> float: ...


def check_available() -> None:
    """Raise a clear error when the TensorBoard writer cannot be imported.

    Raises:
        PyttiError: the ``tensorboard`` package is missing.
    """
    try:
        import tensorboard  # noqa: F401
    except ImportError as e:
        raise PyttiError(INSTALL_HINT) from e


class MetricsWriter:
    """Writes TensorBoard event files into ``log_dir`` (created if needed).

    Args:
        log_dir: the folder for the event files (``<run>/tensorboard``).
        steps_per_frame: optimizer steps per frame (for the global step).
        image_every: log the image on frame 1 and every this many frames.
        learning_rate: the rate to log when an event carries none.
        pre_animation_steps: frame 1's extra steps (they come first on the x axis).

    Example:
        >>> with MetricsWriter(tmp / "tensorboard", steps_per_frame=50) as metrics:  # doctest: +SKIP
        ...     result = render_frame(state, frame, ctx, on_step=metrics.on_step)
        ...     metrics.on_frame(frame.index, result.seconds, result.image)
    """

    def __init__(
        self,
        log_dir: Path,
        *,
        steps_per_frame: int,
        image_every: int = 10,
        learning_rate: float | None = None,
        pre_animation_steps: int = 0,
    ) -> None:
        if image_every < 1:
            raise PyttiError(f"image_every must be >= 1, got {image_every}")
        check_available()
        from torch.utils.tensorboard import SummaryWriter

        self.log_dir = Path(log_dir)
        self.steps_per_frame = max(1, steps_per_frame)
        self.image_every = image_every
        self.learning_rate = learning_rate
        self.pre_animation_steps = max(0, pre_animation_steps)
        self._writer = SummaryWriter(log_dir=str(self.log_dir))

    def global_step(self, frame: int, step: int) -> int:
        """The x position of step ``step`` (1-based, as in the step events) of frame ``frame`` (1-based).

        Frame 1 holds ``pre_animation_steps + steps_per_frame`` steps, every later frame ``steps_per_frame``.
        """
        pre = self.pre_animation_steps if frame > 1 else 0
        return (frame - 1) * self.steps_per_frame + pre + step

    def on_step(self, event: StepRecord) -> None:
        """Log one step's losses and learning rate (usable directly as the renderer's ``on_step``)."""
        x = self.global_step(event.frame, event.step)
        self._scalar("loss/total", event.loss, x)
        losses: Mapping[str, float] | None = getattr(event, "losses", None)
        for name, value in (losses or {}).items():
            self._scalar(f"loss/{_tag(name)}", value, x)
        rate = getattr(event, "learning_rate", None)
        rate = self.learning_rate if rate is None else rate
        if rate is not None:
            self._scalar("learning_rate", rate, x)

    def on_frame(self, frame: int, seconds: float, image: Any = None, loss: float | None = None) -> None:
        """Log a finished frame's timing (and its image on sampled frames); flush to disk.

        Args:
            frame: the 1-based frame index.
            seconds: wall time of the frame.
            image: ``(1, 3, H, W)`` float tensor in [0, 1] or ``(H, W, 3)`` uint8 array; logged on frame 1
                and every ``image_every`` frames.
            loss: the frame's last loss.
        """
        x = self.global_step(frame, self.steps_per_frame + (self.pre_animation_steps if frame == 1 else 0))
        self._scalar("time/frame_seconds", seconds, x)
        if loss is not None:
            self._scalar("loss/frame_last", loss, x)
        if image is not None and (frame == 1 or frame % self.image_every == 0):
            self._writer.add_image("image", _hwc_uint8(image), x, dataformats="HWC")
        self._writer.flush()

    def close(self) -> None:
        """Flush and close the event file."""
        self._writer.close()

    def __enter__(self) -> MetricsWriter:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()

    def _scalar(self, tag: str, value: float, x: int) -> None:
        if math.isfinite(value):  # a nan loss (no step ran) would only break the chart's scale
            self._writer.add_scalar(tag, float(value), x)


def open_metrics(run_dir: Path, scene: Any) -> MetricsWriter | None:
    """The writer for rendering ``scene`` into ``run_dir`` (``<run_dir>/tensorboard``); ``None`` when off.

    Args:
        run_dir: the run directory.
        scene: a validated ``Scene`` (reads ``tensorboard``, ``tensorboard_image_every``,
            ``steps_per_frame`` and ``learning_rate``).

    Raises:
        PyttiError: ``tensorboard: true`` but the ``tensorboard`` package is missing.
    """
    if not getattr(scene, "tensorboard", False):
        return None
    return MetricsWriter(
        Path(run_dir) / "tensorboard",
        steps_per_frame=scene.steps_per_frame,
        image_every=scene.tensorboard_image_every,
        learning_rate=scene.learning_rate,
        pre_animation_steps=getattr(scene, "pre_animation_steps", 0),
    )


def _tag(name: str) -> str:
    """A loss name as a TensorBoard tag part: ``/`` groups terms (``prompt/...``, ``stabilization/...``)."""
    return "/".join(part.strip() for part in name.split("/")).strip("/") or "unnamed"


def _hwc_uint8(image: Any) -> np.ndarray:
    """``(1, 3, H, W)`` float tensor in [0, 1] or ``(H, W, 3)`` uint8 array -> ``(H, W, 3)`` uint8."""
    if isinstance(image, np.ndarray):
        array = image
    else:
        array = image.detach()[0].clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).cpu().numpy()
    if array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8:
        raise PyttiError(f"expected a (1, 3, H, W) tensor or (H, W, 3) uint8 image, got {array.shape}")
    return array  # (H, W, 3)
