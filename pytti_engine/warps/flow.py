"""Warping by optical flow, and occlusions from a forward-backward check (pure tensor functions).

Convention (every function here):
    - flows are :math:`(B, 2, H, W)` in **pixels**, channel 0 = x (right), channel 1 = y (down);
    - a **backward** flow ``b`` from frame A to frame B says where each pixel of B came from in A:
      ``B(p) ≈ A(p + b(p))``; warping A by ``b`` (:func:`flow_warp`) predicts B;
    - the matching **forward** flow ``f`` says where each pixel of A went in B: ``A(q) ≈ B(q + f(q))``;
    - coordinates: origin at the centre of the top-left pixel (as :func:`pytti_engine.warps.modes.sample_pixels`).
"""

from __future__ import annotations

from kornia.geometry import create_meshgrid
from torch import Tensor

from pytti_engine.checks import check_shape
from pytti_engine.errors import ShapeError
from pytti_engine.types import PaddingMode, SamplingMode
from pytti_engine.warps.modes import grid_dtype, sample_pixels


def flow_grid(flow: Tensor) -> Tensor:
    """The sampling grid ``p + flow(p)`` of a backward flow.

    Args:
        flow: :math:`(B, 2, H, W)` pixels.

    Returns:
        :math:`(B, H, W, 2)` pixel coordinates, in :func:`grid_dtype` of ``flow``.
    """
    check_shape(flow, "B 2 H W")
    _, _, height, width = flow.shape
    dtype = grid_dtype(flow.dtype)
    pixels = create_meshgrid(height, width, normalized_coordinates=False, device=flow.device, dtype=dtype)
    return pixels + flow.to(dtype).permute(0, 2, 3, 1)


def flow_warp(
    image: Tensor, flow: Tensor, *, padding: PaddingMode = "smear", sampling: SamplingMode = "bilinear"
) -> Tensor:
    """Warp ``image`` by a backward ``flow``: ``out(p) = image(p + flow(p))`` (differentiable in both).

    Args:
        image: :math:`(B, C, H, W)` (or a batch of 1 shared by every flow).
        flow: :math:`(B, 2, H, W)` pixels, the same ``H, W``.
        padding: infill for samples outside the image.
        sampling: interpolation.

    Returns:
        :math:`(B, C, H, W)`.

    Example:
        >>> import torch
        >>> img = torch.arange(4.0).view(1, 1, 1, 4)
        >>> flow = torch.zeros(1, 2, 1, 4)
        >>> flow[:, 0] = -1.0  # every pixel came from one to the left: content moved right
        >>> flow_warp(img, flow, padding="black")
        tensor([[[[0., 0., 1., 2.]]]])
    """
    check_shape(image, "B C H W")
    if image.shape[-2:] != flow.shape[-2:]:
        raise ShapeError(f"flow is {tuple(flow.shape[-2:])}, image is {tuple(image.shape[-2:])}")
    return sample_pixels(image, flow_grid(flow), padding=padding, sampling=sampling)


def occlusion_mask(backward: Tensor, forward: Tensor, *, alpha: float = 0.01, beta: float = 0.5) -> Tensor:
    """Pixels of the later frame whose backward flow is confirmed by the forward flow (Sundaram et al.
    2010, as used for video style transfer by Ruder et al. 2016).

    A pixel ``p`` of B is **valid** when ``|b(p) + f(p + b(p))|² <= alpha (|b(p)|² + |f(p + b(p))|²) + beta``:
    following the backward flow into A and the forward flow back lands on ``p`` again. Pixels that
    fail are occluded (newly revealed in B) or unreliable, and should be re-initialized from B.

    Args:
        backward: :math:`(B, 2, H, W)` backward flow from A to B.
        forward: :math:`(B, 2, H, W)` forward flow from A to B.
        alpha: relative tolerance.
        beta: absolute tolerance in squared pixels.

    Returns:
        :math:`(B, 1, H, W)` float, 1 = valid, 0 = occluded.
    """
    check_shape(backward, "B 2 H W")
    check_shape(forward, "B 2 H W")
    forward_there = flow_warp(forward, backward, padding="smear", sampling="bilinear")  # f(p + b(p))
    error = (backward + forward_there).pow(2).sum(1, keepdim=True)
    scale = backward.pow(2).sum(1, keepdim=True) + forward_there.pow(2).sum(1, keepdim=True)
    inside = _inside(flow_grid(backward), backward.shape[-2], backward.shape[-1])
    return ((error <= alpha * scale + beta) & inside).to(backward.dtype)


def _inside(grid: Tensor, height: int, width: int) -> Tensor:
    """(B, 1, H, W) whether each grid point lies inside the image (edges included)."""
    x, y = grid[..., 0], grid[..., 1]
    ok = (x >= -0.5) & (x <= width - 0.5) & (y >= -0.5) & (y <= height - 0.5)
    return ok.unsqueeze(1)
