"""Cutouts: random square crops of the image, resized and augmented for a perceptor, in one batched grid.

PyTTI's ``pytti_classic`` sampler crops each cutout in a Python loop, area-pools it, then runs a chain
of kornia augmentations that each resample the whole batch. Here the crop, the resize, the horizontal
flip and the affine jitter of every cutout compose into **one affine matrix per cutout**, so the
whole batch is a single sampling grid and one ``grid_sample`` (per pyramid level, see below), followed
by additive noise. Everything random is drawn from the caller's :class:`torch.Generator`.

Sampler (PyTTI semantics, continuous instead of whole pixels):
    - ``size = min(W, H) · clip(N(0.8, 0.3), cut_size / min(W, H), 1) ** cut_pow`` pixels (square);
    - non-``clamp`` modes: the crop's top-left corner is uniform in
      ``[-pad, W - size + pad]`` with ``pad = min(size, round(W · cutout_border))`` (likewise for y),
      so a crop may reach ``cutout_border`` beyond the edge; the outside is filled like the infill mode
      of the same name;
    - ``clamp``: the corner is drawn over the same padded range, then shifted back inside the image
      (as PyTTI does, which favours crops touching the edges a little).

Augmentation (``augment=True``; magnitudes after PyTTI's kornia stack):
    - horizontal flip with probability 0.3;
    - with probability 0.8, rotation uniform in ±30°, translation uniform in ±10 % of the crop size
      per axis, and scale uniform in [0.95, 1.05] (PyTTI's ``RandomAffine(degrees=30, translate=0.1)``
      plus a little zoom standing in for its ``RandomPerspective``);
    - unlike PyTTI, a rotated crop shows the real image around it, not smeared crop borders; only points
      outside the *image* are filled by the border mode (``clamp`` smears them).

Noise: each cutout gets ``f · N(0, 1)`` per pixel with ``f ~ U(0, noise)`` per cutout (PyTTI's
``noise_fac``). Colour jitter and random erasing of PyTTI's stack are left out (they cost more than the
rest together and are barely visible at PyTTI's magnitudes).

Anti-aliasing: a bilinear tap on a crop much larger than ``cut_size`` skips pixels and aliases. Each
cutout is therefore sampled from a level of an area-averaged pyramid (level ``k`` is the image pooled
by ``2**k``) chosen so its sampling step is within a factor √2 of one level pixel; PyTTI's
``adaptive_avg_pool2d`` plays the same role. Only the levels that are used are built, and cutouts on
the same level share one ``grid_sample``; when the image is at most ~1.4 × ``cut_size`` (the common
case, e.g. 256² at 224) all cutouts use the image itself and there is exactly one ``grid_sample``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from kornia.geometry.conversions import convert_affinematrix_to_homography
from kornia.geometry.transform import get_rotation_matrix2d
from torch import Tensor

from pytti_engine.checks import check_shape
from pytti_engine.devices import device_constant
from pytti_engine.types import BorderMode, PaddingMode
from pytti_engine.warps.modes import cutout_padding, grid_dtype, sample_affine

_SIZE_MEAN = 0.8
_SIZE_STD = 0.3
_FLIP_P = 0.3
_AFFINE_P = 0.8
_MAX_DEGREES = 30.0
_MAX_TRANSLATE = 0.1  # fraction of the crop size
_MAX_SCALE_DELTA = 0.05
_MIN_LEVEL_SIZE = 8  # pixels; coarser pyramid levels are not built


@dataclass(frozen=True)
class CutoutConfig:
    """What :func:`sample_cutouts` draws (names as in the scene file).

    Attributes:
        cutouts: number of cutouts per call (per perceptor and accumulation step).
        cut_pow: exponent on the relative size; larger values favour smaller crops.
        cut_size: side of each output cutout in pixels (the perceptor's input size).
        cutout_border: how far crops may reach outside the image, as a fraction of its size
            (ignored by ``clamp`` except for the placement distribution).
        border_mode: ``clamp`` | ``mirror`` | ``wrap`` | ``black`` | ``smear``.
        augment: apply the flip and affine jitter.
        noise: maximum per-cutout noise factor (0 disables the noise).
    """

    cutouts: int
    cut_pow: float
    cut_size: int
    cutout_border: float = 0.25
    border_mode: BorderMode = "clamp"
    augment: bool = True
    noise: float = 0.1

    def __post_init__(self) -> None:
        if self.cutouts < 1:
            raise ValueError(f"cutouts must be >= 1, got {self.cutouts}")
        if self.cut_size < 1:
            raise ValueError(f"cut_size must be >= 1, got {self.cut_size}")
        if not self.cut_pow > 0:
            raise ValueError(f"cut_pow must be > 0, got {self.cut_pow}")
        if not self.cutout_border >= 0:
            raise ValueError(f"cutout_border must be >= 0, got {self.cutout_border}")
        if not self.noise >= 0:
            raise ValueError(f"noise must be >= 0, got {self.noise}")
        cutout_padding(self.border_mode)  # validates the name


@dataclass(frozen=True)
class Cutouts:
    """A batch of cutouts and where they came from.

    Attributes:
        images: :math:`(N, 3, S, S)` cutouts (differentiable w.r.t. the source image).
        offsets: :math:`(N, 2)` crop centres ``(x, y)`` normalized by ``(W, H)``: 0 is the left/top
            image edge and 1 the right/bottom edge (outside ``[0, 1]`` when a crop overhangs).
        sizes: :math:`(N, 2)` crop sizes normalized by ``(W, H)``, before the augmentation jitter.
    """

    images: Tensor
    offsets: Tensor
    sizes: Tensor


@dataclass(frozen=True)
class _Draws:
    """Per-cutout random parameters, in pixels of the source image."""

    centres: Tensor  # (N, 2) crop centres, pixel-centre coordinates
    sizes: Tensor  # (N,) crop sides in pixels
    jitter: Tensor  # (N, 3, 3) affine jitter in crop-normalized coordinates


def sample_cutouts(image: Tensor, config: CutoutConfig, generator: torch.Generator) -> Cutouts:
    """Draw ``config.cutouts`` augmented square cutouts of ``image`` at ``config.cut_size``.

    Convention:
        - a cutout is the square ``[x0, x0 + size] × [y0, y0 + size]`` in pixel-edge coordinates (the
          image spans ``[0, W] × [0, H]``), area-resampled to ``S × S`` like ``adaptive_avg_pool2d``;
        - the jitter acts in the crop's own frame (``[-1, 1]`` across the crop), about its centre;
        - the same ``generator`` state always gives the same cutouts (on one device); random numbers are
          drawn on ``generator.device`` in float32 and moved to ``image``'s device and dtype, so use a
          generator on the image's device to avoid a transfer of the noise.

    Args:
        image: :math:`(1, 3, H, W)`, values nominally in ``[0, 1]``.
        config: sampler settings.
        generator: the only source of randomness.

    Returns:
        :class:`Cutouts` with ``images`` :math:`(N, 3, S, S)`, ``offsets`` and ``sizes`` :math:`(N, 2)`.

    Raises:
        ShapeError: if ``image`` is not :math:`(1, 3, H, W)`.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> cuts = sample_cutouts(torch.rand(1, 3, 64, 48), CutoutConfig(4, 1.0, 32), g)
        >>> tuple(cuts.images.shape), tuple(cuts.offsets.shape)
        ((4, 3, 32, 32), (4, 2))
    """
    check_shape(image, "1 3 H W")
    height, width = image.shape[-2:]
    draws = _draw(config, height, width, generator)
    matrices = _crop_matrices(draws).to(device=image.device, dtype=grid_dtype(image.dtype))  # (N, 3, 3)
    images = _sample(image, matrices, draws, config)
    if config.noise > 0:
        images = images + _noise(images.shape, config.noise, generator).to(images)
    size_wh = device_constant([width, height], draws.sizes.device)
    offsets = (draws.centres + 0.5) / size_wh  # pixel-centre coordinates -> [0, 1] edge to edge
    sizes = draws.sizes[:, None] / size_wh
    return Cutouts(images=images, offsets=offsets.to(image.device), sizes=sizes.to(image.device))


def _draw(config: CutoutConfig, height: int, width: int, generator: torch.Generator) -> _Draws:
    """Draw crop sizes, positions and jitter (float32 on the generator's device)."""
    n, dev = config.cutouts, generator.device
    short = min(height, width)
    rel = torch.randn(n, generator=generator, device=dev) * _SIZE_STD + _SIZE_MEAN
    rel = rel.clamp(min=min(config.cut_size / short, 1.0), max=1.0)
    sizes = short * rel**config.cut_pow  # (N,)
    extent = device_constant([width, height], dev)
    border = torch.round(extent * config.cutout_border)  # (2,)
    pad = border if config.border_mode == "clamp" else torch.minimum(border, sizes[:, None])  # (N, 2)
    span = extent - sizes[:, None]  # (N, 2) corner range inside the image
    corner = torch.rand(n, 2, generator=generator, device=dev) * (span + 2 * pad) - pad
    if config.border_mode == "clamp":
        corner = torch.minimum(corner.clamp(min=0), span)
    centres = corner + sizes[:, None] / 2 - 0.5  # pixel-centre coordinates
    jitter = _jitter(n, generator) if config.augment else torch.eye(3, device=dev).expand(n, 3, 3)
    return _Draws(centres=centres, sizes=sizes, jitter=jitter)


def _jitter(n: int, generator: torch.Generator) -> Tensor:
    """Per-cutout flip + rotation + scale + translation as (N, 3, 3) matrices in crop-normalized units."""
    dev = generator.device
    u = torch.rand(n, 6, generator=generator, device=dev)
    flip = torch.where(u[:, 0] < _FLIP_P, -1.0, 1.0)
    active = (u[:, 1] < _AFFINE_P).float()
    angle = (2 * u[:, 2] - 1) * _MAX_DEGREES * active
    scale = 1 + (2 * u[:, 3] - 1) * _MAX_SCALE_DELTA * active
    shift = (2 * u[:, 4:6] - 1) * (2 * _MAX_TRANSLATE) * active[:, None]  # crop spans 2 units
    centre = torch.zeros(n, 2, device=dev)
    scales = torch.stack([scale * flip, scale], dim=1)  # flip first, then rotate
    matrix = convert_affinematrix_to_homography(get_rotation_matrix2d(centre, angle, scales))
    matrix[:, :2, 2] = shift
    return matrix


def _crop_matrices(draws: _Draws) -> Tensor:
    """(N, 3, 3) maps from jittered crop-normalized coordinates to source pixel coordinates."""
    half = draws.sizes / 2
    place = torch.zeros_like(draws.jitter)
    place[:, 0, 0] = half
    place[:, 1, 1] = half
    place[:, :2, 2] = draws.centres
    place[:, 2, 2] = 1.0
    return place @ draws.jitter


def _sample(image: Tensor, matrices: Tensor, draws: _Draws, config: CutoutConfig) -> Tensor:
    """Resample all cutouts: one batched grid, one ``grid_sample`` per pyramid level in use.

    The levels a config can use at all are known on the host (:func:`_level_range`); when that is one
    level there is one ``grid_sample`` and no look at the draws. Otherwise the CPU samples each level
    in use for its own cutouts (reading the drawn levels is free there), while other devices sample
    every possible level for all cutouts and pick per cutout on the device (a few more taps, but no
    host sync, which would stall the GPU every step). Both give the same values.
    """
    s = config.cut_size
    padding = cutout_padding(config.border_mode)
    possible = _level_range(config, image.shape[-2:])
    if len(possible) == 1:
        return _sample_level(image, matrices, possible[0], padding, s)
    levels = _levels(draws, config, image.shape[-2:]).to(image.device)  # (N,)
    if image.device.type != "cpu":
        return _sample_levels_on_device(image, matrices, levels, possible, padding, s)
    used = levels.unique().tolist()
    if len(used) == 1:
        return _sample_level(image, matrices, used[0], padding, s)
    out = image.new_zeros(config.cutouts, 3, s, s)
    for level in used:
        idx = (levels == level).nonzero().squeeze(1)
        out = out.index_copy(0, idx, _sample_level(image, matrices[idx], level, padding, s))
    return out


def _sample_levels_on_device(
    image: Tensor, matrices: Tensor, levels: Tensor, possible: range, padding: PaddingMode, s: int
) -> Tensor:
    """Every cutout sampled on each level of ``possible``, kept where ``levels`` (N,) says: (N, 3, S, S)."""
    levels = levels.clamp(possible[0], possible[-1])  # a no-op: the range covers every drawn level
    out: Tensor | None = None
    for level in possible:
        sampled = _sample_level(image, matrices, level, padding, s)
        out = sampled if out is None else torch.where((levels == level).view(-1, 1, 1, 1), sampled, out)
    assert out is not None
    return out


def _sample_level(image: Tensor, matrices: Tensor, level: int, padding: PaddingMode, s: int) -> Tensor:
    """Sample (n, 3, 3) crop maps on pyramid ``level`` of ``image`` -> (n, 3, S, S)."""
    if level == 0:
        return sample_affine(image, matrices, (s, s), padding=padding)
    height, width = image.shape[-2:]
    size = (math.ceil(height / 2**level), math.ceil(width / 2**level))
    pooled = F.adaptive_avg_pool2d(image, size)
    # Pixel centres of the full image -> of the pooled one: x' = (x + 0.5) * w' / w - 0.5.
    rescale = torch.eye(3, device=matrices.device, dtype=matrices.dtype)
    rescale[0, 0] = size[1] / width
    rescale[1, 1] = size[0] / height
    rescale[:2, 2] = rescale.diagonal()[:2] * 0.5 - 0.5
    return sample_affine(pooled, rescale @ matrices, (s, s), padding=padding)


def _levels(draws: _Draws, config: CutoutConfig, image_size: torch.Size) -> Tensor:
    """Pyramid level per cutout: round(log2(source pixels per output pixel)), at least 0."""
    # The jitter is a similarity (flip, rotation, uniform scale): its scale is the RMS of the 2x2 part.
    scale = draws.jitter[:, :2, :2].square().sum(dim=(1, 2)).div(2).sqrt()  # (N,)
    step = draws.sizes * scale / config.cut_size  # (N,)
    return torch.log2(step).round().clamp(0, _top_level(image_size)).long()


def _top_level(image_size: torch.Size) -> int:
    """The coarsest pyramid level built for an image of ``image_size`` (H, W)."""
    return max(0, int(math.log2(max(min(image_size) / _MIN_LEVEL_SIZE, 1))))


def _level_range(config: CutoutConfig, image_size: torch.Size) -> range:
    """Every pyramid level :func:`_levels` can give for ``config`` on an image of ``image_size``.

    From the sampler's bounds, without looking at any draw: crop sides lie in
    ``[short · min(cut_size / short, 1) ** cut_pow, short]`` and the jitter's scale in
    ``1 ± _MAX_SCALE_DELTA`` (exactly 1 without augmentation); a small margin covers float32 rounding.
    """
    short = min(image_size)
    smallest = short * min(config.cut_size / short, 1.0) ** config.cut_pow
    delta = _MAX_SCALE_DELTA if config.augment else 0.0
    low = smallest * (1 - delta) * (1 - 1e-4) / config.cut_size
    high = short * (1 + delta) * (1 + 1e-4) / config.cut_size
    top = _top_level(image_size)
    first = min(max(round(math.log2(low)), 0), top)
    last = min(max(round(math.log2(high)), 0), top)
    return range(first, last + 1)


def _noise(shape: torch.Size, noise: float, generator: torch.Generator) -> Tensor:
    """Gaussian noise scaled per cutout by a factor ~ U(0, noise) (float32, on the generator's device)."""
    dev = generator.device
    factors = torch.rand(shape[0], 1, 1, 1, generator=generator, device=dev) * noise
    return torch.randn(shape, generator=generator, device=dev).mul_(factors)
