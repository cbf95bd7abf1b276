"""Depth for 3D motion: an estimator interface, Depth-Anything-V2 through ``transformers``, flat depth.

A :class:`DepthEstimator` turns an image into *relative inverse depth* (disparity-like: larger is
nearer, any affine scale), which is what Depth Anything, MiDaS and DPT predict. A :class:`DepthScale`
maps it to depth in pixels between the scene's ``near_plane`` and ``far_plane`` (linearly in inverse
depth, so the model's relative ordering and spacing are kept); a render fixes that map on its first
depth estimate and keeps it, so depth does not breathe from frame to frame. ``depth_model: flat`` is
explicit and has no estimator: every pixel is at one distance (:func:`flat_depth`; the focal distance
unless the scene sets ``flat_depth``), which keeps 3D rotations exact and turns translations into the
matching 2D shift/zoom, with no parallax. Nothing falls back to flat
silently: a model that cannot be loaded is a :class:`~pytti_engine.errors.ModelLoadError`.

``transformers`` is an optional extra (``pip install pytti-flow[depth]``), imported only when a model
is loaded.
"""

from __future__ import annotations

import hashlib
import logging
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor

from pytti_engine.checks import check_shape
from pytti_engine.errors import ModelLoadError

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_DEPTH_SIZE = 392  # longest side fed to the model (a multiple of its 14-px patch)


class DepthEstimator(Protocol):
    """Predicts relative inverse depth (larger = nearer) for a batch of images."""

    def __call__(self, image: Tensor) -> Tensor:
        """:math:`(B, 3, H, W)` in [0, 1] -> :math:`(B, 1, H, W)` relative inverse depth (differentiable)."""
        ...


class DepthAnything:
    """A ``transformers`` depth-estimation model (Depth-Anything-V2 by default) as a :class:`DepthEstimator`.

    Args:
        model: an ``AutoModelForDepthEstimation`` in eval mode.
        size: longest side of the model input in pixels (rounded to the 14-px patch grid).
        mean: the model's input normalization mean.
        std: the model's input normalization std.
    """

    def __init__(
        self,
        model: Any,
        size: int = DEFAULT_DEPTH_SIZE,
        mean: tuple[float, ...] = IMAGENET_MEAN,
        std: tuple[float, ...] = IMAGENET_STD,
    ) -> None:
        self.model = model
        self.size = size
        self.mean = mean
        self.std = std

    def __call__(self, image: Tensor) -> Tensor:
        """:math:`(B, 3, H, W)` in [0, 1] -> :math:`(B, 1, H, W)` relative inverse depth."""
        check_shape(image, "B 3 H W")
        height, width = image.shape[-2:]
        size = (
            _patch_multiple(height, self.size, height, width),
            _patch_multiple(width, self.size, height, width),
        )
        x = F.interpolate(image, size=size, mode="bilinear", align_corners=False)
        mean = x.new_tensor(self.mean).view(1, 3, 1, 1)
        std = x.new_tensor(self.std).view(1, 3, 1, 1)
        disparity = self.model(pixel_values=(x - mean) / std).predicted_depth[:, None]  # (B, 1, h, w)
        return F.interpolate(disparity, size=(height, width), mode="bilinear", align_corners=False)


def _patch_multiple(side: int, target: int, height: int, width: int, patch: int = 14) -> int:
    """``side`` scaled so the longest side is ``target``, rounded to a multiple of ``patch`` (>= 1 patch)."""
    return max(patch, round(side * target / max(height, width) / patch) * patch)


def load_depth_model(ref: str | Path, device: torch.device, *, size: int | None = None) -> DepthAnything:
    """Load a depth-estimation model from a local folder or the Hugging Face cache (never the network
    when ``HF_HUB_OFFLINE=1``).

    Args:
        ref: a folder with ``config.json`` + ``model.safetensors`` (+ ``preprocessor_config.json``), or a
            hub id such as ``depth-anything/Depth-Anything-V2-Small-hf`` already in the cache.
        device: where to run it.
        size: longest side of the model input; default: the height in the folder's
            ``preprocessor_config.json`` (518 for Depth-Anything-V2), else 392.

    Returns:
        The estimator, in eval mode with gradients off for its parameters.

    Raises:
        ModelLoadError: ``transformers`` is missing, or the model cannot be loaded.
    """
    try:
        from transformers import AutoModelForDepthEstimation
    except ImportError as e:
        raise ModelLoadError("depth models need transformers: install pytti-flow[depth]") from e
    local = Path(ref).is_dir()
    try:
        model = AutoModelForDepthEstimation.from_pretrained(str(ref), local_files_only=True)
    except (OSError, ValueError) as e:
        where = "folder" if local else "hub id (looked in the Hugging Face cache only)"
        raise ModelLoadError(f"cannot load depth model {where} {ref}: {e}") from e
    model = model.to(device).eval().requires_grad_(False)
    pre = _preprocessor(Path(ref)) if local else {}
    mean = tuple(pre.get("image_mean", IMAGENET_MEAN))
    std = tuple(pre.get("image_std", IMAGENET_STD))
    trained = pre.get("size", {}).get("height") if isinstance(pre.get("size"), dict) else None
    return DepthAnything(model, size=size or int(trained or DEFAULT_DEPTH_SIZE), mean=mean, std=std)


def _preprocessor(folder: Path) -> dict[str, Any]:
    """``preprocessor_config.json`` of a model folder (empty when absent)."""
    import json

    config = folder / "preprocessor_config.json"
    if not config.is_file():
        return {}
    data = json.loads(config.read_text())
    return data if isinstance(data, dict) else {}


@dataclass(frozen=True)
class DepthScale:
    """The map from a model's relative inverse depth ``d`` to depth in pixels: ``1 / (gain·d + offset)``.

    Depth models predict disparity up to an unknown scale and shift, so some map has to be chosen. A
    render fixes it **once**, on the first image whose depth it needs (:meth:`fit`: that image's nearest
    pixel at ``near``, its farthest at ``far``), and keeps it for every later frame (the render state and
    its checkpoints carry it), so the same content keeps the same depth and the same parallax however the
    rest of the picture changes. Normalizing every frame instead would pin each frame's nearest pixel to
    ``near`` and make the parallax speed breathe with the content.

    Attributes:
        gain: inverse pixels per unit of disparity.
        offset: inverse depth of disparity 0 (1 / pixels).
    """

    gain: float
    offset: float

    @classmethod
    def fit(cls, disparity: Tensor, near: float, far: float) -> DepthScale:
        """The map that sends this disparity's smallest value to ``far`` and its largest to ``near``.

        A constant map (a model with nothing to see) gets the spread of a relative clamp, so it sits at
        ``far`` and later images are not blown up by an absolute epsilon.

        Args:
            disparity: :math:`(B, 1, H, W)` (every image of the batch together).
            near: depth of the nearest pixel, > 0.
            far: depth of the farthest pixel, > near.
        """
        _check_planes(near, far)
        lo = float(disparity.detach().amin())
        hi = float(disparity.detach().amax())
        span = max(hi - lo, 1e-6 * max(abs(hi), 1e-12))
        gain = (1.0 / near - 1.0 / far) / span
        return cls(gain=gain, offset=1.0 / far - lo * gain)

    def to_depth(self, disparity: Tensor, near: float, far: float) -> Tensor:
        """Depth in pixels, clamped to ``[near, far]`` (differentiable w.r.t. ``disparity`` inside).

        Args:
            disparity: :math:`(B, 1, H, W)` relative inverse depth.
            near: the nearest depth allowed.
            far: the farthest depth allowed.
        """
        _check_planes(near, far)
        inverse = (disparity * self.gain + self.offset).clamp(1.0 / far, 1.0 / near)
        return inverse.reciprocal()

    def to_list(self) -> list[float]:
        """``[gain, offset]`` (stored in checkpoints)."""
        return [self.gain, self.offset]


def _check_planes(near: float, far: float) -> None:
    if not 0 < near < far:
        raise ValueError(f"need 0 < near < far, got near={near}, far={far}")


def disparity_to_depth(disparity: Tensor, near: float, far: float, scale: DepthScale | None = None) -> Tensor:
    """Map relative inverse depth to depth in ``[near, far]`` (linear in inverse depth).

    With ``scale`` (a render's fixed :class:`DepthScale`) every image uses that map; without it, each
    image is mapped on its own: its largest disparity becomes ``near``, its smallest ``far`` (a constant
    map becomes ``far`` everywhere).

    Args:
        disparity: :math:`(B, 1, H, W)`.
        near: depth of the nearest pixel, > 0.
        far: depth of the farthest pixel, > near.
        scale: a fixed map, or ``None`` to fit each image.

    Returns:
        :math:`(B, 1, H, W)` depth, differentiable w.r.t. ``disparity``.

    Example:
        >>> disparity_to_depth(torch.tensor([[[[0.0, 1.0]]]]), 1.0, 10.0)
        tensor([[[[10.,  1.]]]])
    """
    check_shape(disparity, "B 1 H W")
    if scale is not None:
        return scale.to_depth(disparity, near, far)
    return torch.cat([DepthScale.fit(d[None], near, far).to_depth(d[None], near, far) for d in disparity])


def flat_depth(image: Tensor, distance: float) -> Tensor:
    """``depth_model: flat``: every pixel at one distance (no parallax; rotations stay exact).

    Args:
        image: :math:`(B, C, H, W)`.
        distance: depth in pixels (the focal length unless the scene sets ``flat_depth``).

    Returns:
        :math:`(B, 1, H, W)` filled with ``distance``.
    """
    check_shape(image, "B C H W")
    batch, _, height, width = image.shape
    return image.new_full((batch, 1, height, width), float(distance))


def image_hash(image: Tensor) -> str:
    """sha256 of an image's shape, dtype and values (the depth cache key)."""
    data = image.detach().to("cpu").contiguous()
    digest = hashlib.sha256(f"{tuple(data.shape)}{data.dtype}".encode())
    digest.update(data.numpy().tobytes())
    return digest.hexdigest()


@dataclass
class DepthCache:
    """Depth maps by image hash (most recent ``capacity`` kept): depth runs once per distinct frame."""

    capacity: int = 4
    entries: OrderedDict[str, Tensor] = field(default_factory=OrderedDict)
    hits: int = 0
    misses: int = 0

    def get(self, key: str) -> Tensor | None:
        """The cached depth for ``key`` (marked as recently used), or ``None``."""
        value = self.entries.get(key)
        if value is None:
            self.misses += 1
            return None
        self.hits += 1
        self.entries.move_to_end(key)
        return value

    def put(self, key: str, value: Tensor) -> None:
        """Store ``value`` under ``key``, evicting the least recently used beyond ``capacity``."""
        self.entries[key] = value
        self.entries.move_to_end(key)
        while len(self.entries) > self.capacity:
            self.entries.popitem(last=False)


@dataclass
class DepthProvider:
    """Depth in pixels for the 3D warp: an estimator through a fixed :class:`DepthScale`, or flat.

    Depth maps are cached by image hash; the first image that needs depth fixes
    :attr:`scale` (unless one was set, e.g. from a checkpoint), and every later image uses it.

    Attributes:
        estimator: the model, or ``None`` for ``depth_model: flat``.
        near: depth of the nearest pixel (pixels).
        far: depth of the farthest pixel (pixels).
        field_of_view: vertical, degrees (flat depth sits at the focal distance).
        flat: ``depth_model: flat``: the plane's depth in pixels (``None`` = the focal distance).
        scale: the render's disparity-to-depth map (``None`` until the first estimate).
        cache: depth maps by image hash (made with ``scale``).
    """

    estimator: DepthEstimator | None
    near: float
    far: float
    field_of_view: float
    flat: float | None = None
    scale: DepthScale | None = None
    cache: DepthCache = field(default_factory=DepthCache)
    _cached_scale: DepthScale | None = field(default=None, repr=False)

    @torch.no_grad()
    def depth(self, image: Tensor) -> Tensor:
        """:math:`(B, 3, H, W)` in [0, 1] -> :math:`(B, 1, H, W)` depth in pixels (no gradient)."""
        from pytti_engine.warps.warp3d import focal_length

        if self.estimator is None:
            distance = (
                self.flat if self.flat is not None else focal_length(self.field_of_view, image.shape[-2])
            )
            return flat_depth(image, distance)
        if self._cached_scale != self.scale:  # a scale set from outside (a checkpoint): older maps are stale
            self.cache.entries.clear()
        key = image_hash(image)
        cached = self.cache.get(key)
        if cached is None:
            disparity = self.estimator(image)
            if self.scale is None:
                self.scale = DepthScale.fit(disparity, self.near, self.far)
            cached = self.scale.to_depth(disparity, self.near, self.far)
            self.cache.put(key, cached)
            self._cached_scale = self.scale
        return cached


def write_tiny_depth_model(folder: Path, *, seed: int = 0) -> Path:
    """Save a tiny random-weight Depth-Anything model (0.14M parameters) in the transformers layout.

    For tests and benchmarks: the folder loads through :func:`load_depth_model` exactly like a real
    Depth-Anything-V2-Small download (``config.json``, ``model.safetensors``, ``preprocessor_config.json``).

    Args:
        folder: where to write (created).
        seed: torch seed for the random weights.

    Returns:
        ``folder``.
    """
    try:
        from transformers import (
            DepthAnythingConfig,
            DepthAnythingForDepthEstimation,
            Dinov2Config,
            DPTImageProcessor,
        )
    except ImportError as e:
        raise ModelLoadError("depth models need transformers: install pytti-flow[depth]") from e
    backbone = Dinov2Config(  # type: ignore[call-arg]
        image_size=56,
        patch_size=14,
        hidden_size=32,
        num_hidden_layers=4,
        num_attention_heads=2,
        intermediate_size=64,
        out_indices=[1, 2, 3, 4],
        reshape_hidden_states=False,
    )
    config = DepthAnythingConfig(
        backbone_config=backbone,
        reassemble_hidden_size=32,
        neck_hidden_sizes=[8, 16, 32, 32],
        fusion_hidden_size=16,
        head_hidden_size=8,
    )
    folder.mkdir(parents=True, exist_ok=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = DepthAnythingForDepthEstimation(config)
    model.save_pretrained(folder)
    DPTImageProcessor(
        size={"height": 56, "width": 56},
        keep_aspect_ratio=True,
        ensure_multiple_of=14,
        image_mean=list(IMAGENET_MEAN),
        image_std=list(IMAGENET_STD),
    ).save_pretrained(folder)
    return folder
