"""The one place that maps infill/border/sampling names to ``grid_sample`` arguments, and samples with them.

Every resampling in the engine (the 2D warp, cutouts, and later the 3D and flow warps) goes through
:func:`sample_pixels` (a grid of pixel coordinates) or :func:`sample_affine` (per-batch affine maps, the
fast path for cutouts), so a mode name means the same thing everywhere:

=========  ==========================================  =================================
name       fills a coordinate outside the image with   ``grid_sample`` ``padding_mode``
=========  ==========================================  =================================
mirror     the reflection about the edge pixel centre  ``reflection`` (``align_corners=True``)
wrap       the pixel on the opposite side (periodic)   coordinates wrapped modulo the size
black      zeros                                       ``zeros``
smear      the nearest edge pixel                      ``border``
=========  ==========================================  =================================

``mirror`` matches ``F.pad(mode="reflect")`` (the edge pixel is not repeated), which is what PyTTI's
``grid_sample(padding_mode="reflection", align_corners=True)`` and its cutout padding both do.

``wrap`` is exact, seam included: the image is padded circularly by the interpolation footprint and the
coordinates are wrapped into ``[0, size)``, so bilinear/bicubic taps across the seam read the opposite
edge (PyTTI's ``(grid + m) mod 2.0001 - 1`` trick interpolates with black across the seam instead).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from pytti_engine.checks import check_shape
from pytti_engine.errors import ShapeError
from pytti_engine.types import BorderMode, PaddingMode, SamplingMode

GridSamplePadding = Literal["zeros", "border", "reflection"]
GridSampleMode = Literal["nearest", "bilinear", "bicubic"]

# Taps each side of a sample point that an interpolation reads (bicubic reads x-1 .. x+2).
_FOOTPRINT = 2


def grid_sample_padding(padding: PaddingMode) -> GridSamplePadding:
    """The ``grid_sample`` ``padding_mode`` for an infill name (``wrap`` after its coordinates are wrapped).

    Args:
        padding: an infill name.

    Returns:
        ``"reflection"``, ``"border"`` or ``"zeros"``.
    """
    if padding == "mirror":
        return "reflection"
    if padding == "black":
        return "zeros"
    if padding in ("smear", "wrap"):
        # wrap: coordinates are wrapped inside the circularly padded image, so "border" never triggers
        # except for float round-off at the very edge.
        return "border"
    raise ValueError(f"unknown padding mode {padding!r}; expected mirror, wrap, black or smear")


def grid_sample_mode(sampling: SamplingMode) -> GridSampleMode:
    """The ``grid_sample`` ``mode`` for a sampling name (the names coincide; this validates them).

    Args:
        sampling: ``nearest``, ``bilinear`` or ``bicubic``.

    Returns:
        The same name, checked.
    """
    if sampling not in ("nearest", "bilinear", "bicubic"):
        raise ValueError(f"unknown sampling mode {sampling!r}; expected nearest, bilinear or bicubic")
    return sampling


def cutout_padding(border_mode: BorderMode) -> PaddingMode:
    """The infill used when sampling cutouts with a ``border_mode``.

    ``clamp`` keeps the crops inside the image; pixels that the augmentation jitter still pulls from
    outside are smeared, as PyTTI's ``RandomAffine(padding_mode="border")`` did.

    Args:
        border_mode: a cutout border mode.

    Returns:
        The padding mode to pass to :func:`sample_pixels`.
    """
    if border_mode == "clamp":
        return "smear"
    grid_sample_padding(border_mode)  # validates the name
    return border_mode


def sample_pixels(
    image: Tensor,
    grid: Tensor,
    *,
    padding: PaddingMode,
    sampling: SamplingMode = "bilinear",
) -> Tensor:
    """Sample ``image`` at pixel coordinates (differentiable w.r.t. ``image``).

    Convention:
        - ``grid[b, i, j] = (x, y)`` is the point of ``image[b]`` that becomes output pixel ``(i, j)``
          (a backward map);
        - coordinates are **pixels**, origin at the centre of the top-left pixel, +x right, +y down;
          pixel ``(x, y)`` is ``image[..., y, x]``; the image spans ``[-0.5, W - 0.5]`` edge to edge;
        - sampling uses ``grid_sample(..., align_corners=True)``, for which these pixel coordinates map
          to ``[-1, 1]`` exactly (pixel centres at the ends).

    Args:
        image: :math:`(B, C, H, W)` floating point; a batch of 1 is shared by every grid in the batch
            (broadcast without copying the image, e.g. many cutouts of one image).
        grid: :math:`(B, H_o, W_o, 2)` pixel coordinates on ``image``'s device, float32 or float64
            (see :func:`grid_dtype`; a half-precision image is sampled in the grid's dtype and the result
            cast back).
        padding: how points outside the image are filled (see the module docstring).
        sampling: interpolation.

    Returns:
        :math:`(B, C, H_o, W_o)`.

    Example:
        >>> import torch
        >>> img = torch.arange(4.0).view(1, 1, 1, 4)
        >>> grid = torch.tensor([[[[-1.0, 0.0], [4.0, 0.0]]]])
        >>> sample_pixels(img, grid, padding="wrap")
        tensor([[[[3., 0.]]]])
    """
    _check_batch(image, grid)
    if padding == "wrap":
        image, grid = _wrap(image, grid)
    height, width = image.shape[-2:]
    # pixel -> [-1, 1] for align_corners=True; a 1-pixel axis maps to 0.
    scale = torch.tensor(
        [2.0 / max(width - 1, 1), 2.0 / max(height - 1, 1)], device=grid.device, dtype=grid.dtype
    )
    return _grid_sample(image, grid * scale - 1.0, padding, sampling)


def sample_affine(
    image: Tensor,
    matrix: Tensor,
    size: tuple[int, int],
    *,
    padding: PaddingMode,
    sampling: SamplingMode = "bilinear",
) -> Tensor:
    """Resample ``image`` through per-batch affine maps from output *cells* to source pixels.

    Faster than building a pixel grid and calling :func:`sample_pixels`: the pixel→``[-1, 1]`` step is
    folded into the matrices and the grid comes from ``F.affine_grid``.

    Convention:
        - output pixel ``(i, j)`` of an ``H_o × W_o`` result sits at ``u = (2j + 1) / W_o - 1``,
          ``v = (2i + 1) / H_o - 1`` (cell centres, ``F.affine_grid(..., align_corners=False)``), so
          ``[-1, 1]`` spans the output edge to edge, like ``adaptive_avg_pool2d``;
        - ``matrix`` maps ``(u, v, 1)`` to source **pixel** coordinates as in :func:`sample_pixels`.

    Args:
        image: :math:`(B, C, H, W)`, or :math:`(1, C, H, W)` shared by all maps.
        matrix: :math:`(B, 3, 3)` affine maps (last row ``0 0 1``) on ``image``'s device, in
            :func:`grid_dtype` of its dtype.
        size: output ``(H_o, W_o)``.
        padding: infill name.
        sampling: interpolation.

    Returns:
        :math:`(B, C, H_o, W_o)`.
    """
    check_shape(matrix, "B 3 3")
    out_shape = (matrix.shape[0], image.shape[1], *size)
    if padding == "wrap":
        grid = F.affine_grid(matrix[:, :2, :], list(out_shape), align_corners=False)
        return sample_pixels(image, grid, padding=padding, sampling=sampling)
    height, width = image.shape[-2:]
    to_unit = torch.zeros(3, 3, device=matrix.device, dtype=matrix.dtype)
    to_unit[0, 0] = 2.0 / max(width - 1, 1)
    to_unit[1, 1] = 2.0 / max(height - 1, 1)
    to_unit[:2, 2] = -1.0
    to_unit[2, 2] = 1.0
    grid = F.affine_grid((to_unit @ matrix)[:, :2, :], list(out_shape), align_corners=False)
    _check_batch(image, grid)
    return _grid_sample(image, grid, padding, sampling)


def _check_batch(image: Tensor, grid: Tensor) -> None:
    """Guard shapes for sampling ``image`` at ``grid``; an image batch of 1 broadcasts."""
    check_shape(image, "B C H W")
    check_shape(grid, "B Ho Wo 2")
    if image.shape[0] not in (1, grid.shape[0]):
        raise ShapeError(f"grid batch {grid.shape[0]} does not match image batch {image.shape[0]}")


def _grid_sample(image: Tensor, unit_grid: Tensor, padding: PaddingMode, sampling: SamplingMode) -> Tensor:
    """``F.grid_sample`` with the mapped mode names; a batch-1 image is expanded (a view) to the grid."""
    mode = grid_sample_mode(sampling)
    pad_mode = grid_sample_padding(padding)
    # Expanding (not tiling into one tall grid) lets the CPU backward run in parallel over the batch.
    source = image.expand(unit_grid.shape[0], -1, -1, -1).to(unit_grid.dtype)
    out = F.grid_sample(source, unit_grid, mode=mode, padding_mode=pad_mode, align_corners=True)
    return out.to(image.dtype)


def grid_dtype(image_dtype: torch.dtype) -> torch.dtype:
    """The dtype for sampling coordinates: at least float32 (half precision cannot address pixels of a
    large image: float16 resolves only 0.5 px near 1000)."""
    return image_dtype if image_dtype in (torch.float32, torch.float64) else torch.float32


def _wrap(image: Tensor, grid: Tensor) -> tuple[Tensor, Tensor]:
    """Pad ``image`` circularly and wrap ``grid`` into it, so taps across the seam read the other edge."""
    height, width = image.shape[-2:]
    pad_x, pad_y = min(_FOOTPRINT, width), min(_FOOTPRINT, height)
    padded = F.pad(image, (pad_x, pad_x, pad_y, pad_y), mode="circular")
    size = torch.tensor([width, height], device=grid.device, dtype=grid.dtype)
    offset = torch.tensor([pad_x, pad_y], device=grid.device, dtype=grid.dtype)
    # Shift by +0.5 so that the wrapped range is [-0.5, size - 0.5), the image's own extent.
    wrapped = torch.remainder(grid + 0.5, size) - 0.5 + offset
    return padded, wrapped
