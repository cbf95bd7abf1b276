"""The state carried from one frame to the next."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from pytti_engine.image_params.base import ImageParam


@dataclass
class RenderState:
    """Everything frame N+1 needs from frame N.

    Attributes:
        image: the image model (its tensors are the optimizer's parameters; it holds its EMA and
            locked palette too).
        optimizer: Adam over ``image.parameters()``; its moments carry across frames unless
            ``reset_lr_each_frame`` is set.
        step: optimizer steps taken since the start of the render.
        frame: the last completed frame (0 before the first).
        depth_scale: 3D: the render's disparity-to-depth map ``(gain, offset)``
            (:class:`pytti_engine.depth.DepthScale`), fixed by the first depth estimate; ``None`` before.
        step_generator: the last frame's per-step generator, on the render device, as that frame left
            it (saved in the checkpoint; each frame starts its own, seeded by (seed, frame), so resuming
            does not depend on it); ``None`` before the first optimized frame.
    """

    image: ImageParam
    optimizer: torch.optim.Adam
    step: int = 0
    frame: int = 0
    depth_scale: tuple[float, float] | None = None
    step_generator: torch.Generator | None = None


def make_optimizer(image: ImageParam, learning_rate: float) -> torch.optim.Adam:
    """Adam over the image's parameters (``foreach=False`` keeps CPU results bit-identical everywhere)."""
    return torch.optim.Adam(image.parameters(), lr=learning_rate, foreach=False)


def optimizer_state_tensors(state: RenderState) -> list[dict[str, Any]]:
    """The Adam state dicts (``exp_avg``, ``exp_avg_sq``, ``step``) of the image's *spatial* parameters.

    These are (1, C, h, w) grids that move with the image when it is warped; non-spatial parameters
    (a palette) are left out.
    """
    return [state.optimizer.state.get(p, {}) for p in state.image.spatial_parameters()]
