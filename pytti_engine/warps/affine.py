"""2D motion between frames: translate, rotate and zoom about the image centre (PyTTI's ``animation: 2D``).

The matrix is built with kornia (:func:`kornia.geometry.transform.get_rotation_matrix2d`) and applied as
a backward map through :func:`pytti_engine.warps.modes.sample_pixels` (``grid_sample`` with
``align_corners=True``), so every infill and sampling mode is available, ``wrap`` included.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from kornia.geometry import create_meshgrid
from kornia.geometry.conversions import convert_affinematrix_to_homography
from kornia.geometry.transform import get_rotation_matrix2d
from torch import Tensor

from pytti_engine.checks import check_shape
from pytti_engine.types import PaddingMode, SamplingMode
from pytti_engine.warps.modes import grid_dtype, sample_pixels


@dataclass(frozen=True)
class Motion2D:
    """One frame's 2D camera motion (per-frame velocities, applied incrementally as in PyTTI).

    Attributes:
        translate_x: pixels per frame; ``+`` moves the content right.
        translate_y: pixels per frame; ``+`` moves the content **up** (PyTTI's convention, so imported
            scenes move the same way).
        rotate: degrees per frame; ``+`` turns the content counter-clockwise as displayed.
        zoom: scale factor per frame about the centre; ``> 1`` zooms in (``2`` maps the centre quarter
            of the image onto the whole frame), ``< 1`` zooms out. Must be positive.
        zoom_x: extra horizontal scale factor per frame, multiplied with ``zoom`` (``> 1`` stretches the
            content horizontally about the centre). Must be positive.
        zoom_y: extra vertical scale factor per frame, multiplied with ``zoom``. Must be positive.
    """

    translate_x: float = 0.0
    translate_y: float = 0.0
    rotate: float = 0.0
    zoom: float = 1.0
    zoom_x: float = 1.0
    zoom_y: float = 1.0

    def __post_init__(self) -> None:
        values = (self.translate_x, self.translate_y, self.rotate, self.zoom, self.zoom_x, self.zoom_y)
        if not all(math.isfinite(v) for v in values):
            raise ValueError(f"Motion2D values must be finite, got {self}")
        for name in ("zoom", "zoom_x", "zoom_y"):
            if getattr(self, name) <= 0:
                raise ValueError(f"Motion2D.{name} must be > 0, got {getattr(self, name)}")

    @property
    def scale(self) -> tuple[float, float]:
        """The total ``(x, y)`` scale factor per frame: ``(zoom * zoom_x, zoom * zoom_y)``."""
        return (self.zoom * self.zoom_x, self.zoom * self.zoom_y)

    def is_identity(self) -> bool:
        """Whether this motion leaves every pixel where it is."""
        return self.translate_x == 0 and self.translate_y == 0 and self.rotate == 0 and self.scale == (1, 1)


def motion_matrix(
    motion: Motion2D,
    height: int,
    width: int,
    *,
    device: torch.device | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """The source→destination pixel matrix of a 2D motion.

    The content is first translated, then zoomed and rotated about the image centre, which is the order
    of PyTTI's ``zoom_2d`` (so a pan is magnified by a simultaneous zoom there too):
    ``dst = C · R(rotate) · S(zoom · zoom_x, zoom · zoom_y) · C⁻¹ · T(translate_x, -translate_y) · src``
    (a per-axis zoom scales along the screen axes before the rotation).

    Convention:
        - coordinates are **pixels**, origin at the centre of the top-left pixel, +x right, +y down;
        - the centre ``C`` is ``((W - 1) / 2, (H - 1) / 2)``;
        - the matrix maps a point of the previous frame (source) to where it appears in the new frame
          (destination); :func:`warp_2d` samples with its inverse.

    Args:
        motion: the per-frame motion.
        height: image height in pixels.
        width: image width in pixels.
        device: device of the result.
        dtype: dtype of the result.

    Returns:
        :math:`(1, 3, 3)` homogeneous affine matrix.

    Example:
        >>> motion_matrix(Motion2D(translate_x=2.0, translate_y=1.0), 8, 8)[0, :2, 2]
        tensor([ 2., -1.])
    """
    centre = torch.tensor([[(width - 1) / 2, (height - 1) / 2]], device=device, dtype=dtype)
    angle = torch.tensor([motion.rotate], device=device, dtype=dtype)
    scale = torch.tensor([motion.scale], device=device, dtype=dtype)
    about_centre = convert_affinematrix_to_homography(get_rotation_matrix2d(centre, angle, scale))
    shift = torch.eye(3, device=device, dtype=dtype).unsqueeze(0)
    shift[0, 0, 2] = motion.translate_x
    shift[0, 1, 2] = -motion.translate_y  # + translate_y is up; pixel +y is down
    return about_centre @ shift


def warp_2d(
    image: Tensor,
    motion: Motion2D,
    *,
    infill: PaddingMode = "wrap",
    sampling: SamplingMode = "bilinear",
) -> Tensor:
    """Move the content of ``image`` by one frame of 2D ``motion`` (differentiable w.r.t. ``image``).

    Convention:
        - pixels, origin at the centre of the top-left pixel, +x right, +y down on screen; but
          ``motion.translate_y > 0`` moves content **up** and ``motion.rotate > 0`` is counter-clockwise
          as displayed (see :class:`Motion2D`);
        - rotation and zoom are about the image centre ``((W - 1) / 2, (H - 1) / 2)``;
        - every output pixel ``p`` samples the input at ``M⁻¹ p``, with ``M`` from :func:`motion_matrix`;
          pixels that come from outside the image are filled by ``infill``.

    Args:
        image: :math:`(B, C, H, W)` floating point; the same motion is applied to every batch element.
        motion: the per-frame motion.
        infill: ``mirror`` | ``wrap`` | ``black`` | ``smear`` (see :mod:`pytti_engine.warps.modes`).
        sampling: ``nearest`` | ``bilinear`` | ``bicubic``.

    Returns:
        :math:`(B, C, H, W)`, same dtype and device. An identity motion returns ``image`` itself.

    Raises:
        ShapeError: if ``image`` is not 4-dimensional.

    Example:
        >>> img = torch.zeros(1, 1, 5, 5)
        >>> img[0, 0, 2, 2] = 1.0
        >>> out = warp_2d(img, Motion2D(translate_x=1.0, translate_y=1.0), sampling="nearest")
        >>> (out[0, 0] == 1).nonzero().tolist()
        [[1, 3]]
    """
    check_shape(image, "B C H W")
    if motion.is_identity():
        return image
    batch, _, height, width = image.shape
    grid = affine_grid(motion, height, width, device=image.device, dtype=grid_dtype(image.dtype))
    return sample_pixels(image, grid.expand(batch, -1, -1, -1), padding=infill, sampling=sampling)


def affine_grid(
    motion: Motion2D,
    height: int,
    width: int,
    *,
    device: torch.device | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """The backward map :func:`warp_2d` samples with: for every pixel ``p`` of the new frame, ``M⁻¹ p``.

    Args:
        motion: the per-frame motion.
        height: image height in pixels.
        width: image width in pixels.
        device: device of the result.
        dtype: dtype of the result (at least float32 for large images: see :func:`grid_dtype`).

    Returns:
        :math:`(1, H, W, 2)` pixel coordinates ``(x, y)`` in the previous frame.
    """
    matrix = motion_matrix(motion, height, width, device=device, dtype=torch.float64)
    inverse = torch.linalg.inv(matrix).to(dtype)
    pixels = create_meshgrid(height, width, normalized_coordinates=False, device=device, dtype=dtype)
    # An affine map applied as one matmul (kornia's transform_points is ~20x slower on 512² grids).
    return pixels @ inverse[0, :2, :2].T + inverse[0, :2, 2]  # (1, H, W, 2)


def affine_displacement(
    motion: Motion2D,
    height: int,
    width: int,
    *,
    device: torch.device | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """How far the content that lands on each pixel of the new frame moved: ``p - M⁻¹ p``.

    Convention:
        - pixels, channel 0 = x (right), channel 1 = y (down on screen), so ``translate_x=2`` gives
          ``(2, 0)`` everywhere and ``translate_y=2`` (content up) gives ``(0, -2)``;
        - the negated backward flow of :func:`warp_2d` (same matrix, same grid).

    Args:
        motion: the per-frame motion.
        height: image height in pixels.
        width: image width in pixels.
        device: device of the result.
        dtype: dtype of the result.

    Returns:
        :math:`(1, 2, H, W)` displacement in pixels.

    Example:
        >>> affine_displacement(Motion2D(translate_x=2.0), 4, 4)[0, :, 0, 0]
        tensor([2., 0.])
    """
    pixels = create_meshgrid(height, width, normalized_coordinates=False, device=device, dtype=dtype)
    grid = affine_grid(motion, height, width, device=device, dtype=dtype)
    return (pixels - grid).permute(0, 3, 1, 2)
