"""Camera motion between frames: what happens to the state at a frame boundary, by animation mode.

``apply_motion`` is the one entry point the renderer calls before optimizing frame N (N > 1). It moves
the image, and the optimizer's per-pixel moments with it, so Adam's statistics stay aligned with
the content they were accumulated on.
"""

from __future__ import annotations

from functools import partial
from typing import Protocol

import torch

from pytti_engine.state import RenderState, optimizer_state_tensors
from pytti_engine.types import PaddingMode, SamplingMode
from pytti_engine.warps import Motion2D, warp_2d


class MotionFrame(Protocol):
    """The motion values of one frame of the plan."""

    @property
    def translate_x(self) -> float: ...
    @property
    def translate_y(self) -> float: ...
    @property
    def rotate_2d(self) -> float: ...
    @property
    def zoom(self) -> float: ...


class MotionSettings(Protocol):
    """The scene settings motion needs."""

    @property
    def animation(self) -> str: ...
    @property
    def infill_mode(self) -> PaddingMode: ...
    @property
    def sampling_mode(self) -> SamplingMode: ...


def frame_motion(frame: MotionFrame) -> Motion2D:
    """The 2D camera motion of one frame of the plan."""
    return Motion2D(
        translate_x=frame.translate_x, translate_y=frame.translate_y, rotate=frame.rotate_2d, zoom=frame.zoom
    )


@torch.no_grad()
def warp_state_2d(state: RenderState, motion: Motion2D, infill: PaddingMode, sampling: SamplingMode) -> None:
    """Move the image by ``motion``, and Adam's moments with it (bilinear; second moments kept >= 0)."""
    state.image.apply_warp(partial(warp_2d, motion=motion, infill=infill, sampling=sampling))
    moment_warp = partial(warp_2d, motion=motion, infill=infill, sampling="bilinear")
    for param_state in optimizer_state_tensors(state):
        if "exp_avg" in param_state:
            param_state["exp_avg"].copy_(moment_warp(param_state["exp_avg"]))
            param_state["exp_avg_sq"].copy_(moment_warp(param_state["exp_avg_sq"]).clamp_(min=0))


def apply_motion(state: RenderState, frame: MotionFrame, settings: MotionSettings) -> None:
    """Advance ``state`` across the boundary into ``frame`` according to ``settings.animation``.

    ``off`` keeps the image; ``2d`` applies the frame's affine motion about the centre.
    """
    if settings.animation == "2d":
        motion = frame_motion(frame)
        if not motion.is_identity():
            warp_state_2d(state, motion, settings.infill_mode, settings.sampling_mode)
