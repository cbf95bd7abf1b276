"""Stabilization losses: keep each frame close to what the motion predicts (PyTTI's ``*_stabilization_weight``).

The target of frame N is the image right after the motion into N (:class:`~pytti_engine.motion.MotionOutcome`):
the warped previous frame in ``2d``/``3d``/``off``, the flow-warped previous output with occlusions
re-initialized from the source in ``video``. Frame 1 has no target. Each loss has a per-frame weight
(the plan's ``stabilization`` values, expressions of ``t``) and an optional mask image or video
(white = stabilize, black = free):

=========  ==============================================================================================
direct     ``mean(mask · (image - target)²)``
edge       the same on Sobel gradients of the luma (``kornia.filters.spatial_gradient``, normalized)
depth      the same on the depth model's normalized disparity of image and target (needs a model folder)
flow       ``video``: the direct loss restricted to pixels whose flow passed the forward-backward check
semantic   spherical distance between each cutout's embedding and the target's embedding; cutouts are
           weighted by their mean mask value (computed in the renderer's perceptor pass)
=========  ==============================================================================================

The pure loss functions take tensors; :class:`Stabilizer` holds the per-frame target, the precomputed
target features, and the decoded masks (built once per render, owned by the
:class:`~pytti_engine.motion.MotionRuntime`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from kornia.color import rgb_to_grayscale
from kornia.filters import spatial_gradient
from torch import Tensor

from pytti_engine.checks import check_shape
from pytti_engine.depth import DepthEstimator
from pytti_engine.losses import spherical_distance

PIXEL_LOSSES = ("direct", "edge", "depth", "flow")
MASK_SUFFIXES_VIDEO = frozenset({".mp4", ".mov", ".mkv", ".webm", ".avi", ".gif"})


def masked_mse(image: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
    """``mean(mask · (image - target)²)`` over every element (mask broadcast over channels).

    Args:
        image: :math:`(B, C, H, W)`.
        target: same shape.
        mask: :math:`(B, 1, H, W)` or :math:`(1, 1, H, W)` in [0, 1], or ``None`` for all ones.

    Returns:
        Scalar.
    """
    diff = (image - target).pow(2)
    if mask is not None:
        diff = diff * mask
    return diff.mean()


def sobel_edges(image: Tensor) -> Tensor:
    """Normalized Sobel gradients of the luma.

    Args:
        image: :math:`(B, 3, H, W)` in [0, 1].

    Returns:
        :math:`(B, 2, H, W)` (d/dx, d/dy), replicate-padded at the border.
    """
    check_shape(image, "B 3 H W")
    return spatial_gradient(rgb_to_grayscale(image), mode="sobel", normalized=True)[:, 0]


def edge_loss(image: Tensor, target_edges: Tensor, mask: Tensor | None = None) -> Tensor:
    """MSE between the Sobel edges of ``image`` and precomputed ``target_edges`` (:func:`sobel_edges`)."""
    return masked_mse(sobel_edges(image), target_edges, mask)


def unit_disparity(disparity: Tensor) -> Tensor:
    """Disparity scaled to [0, 1] per image (the models are affine-invariant, so only this is comparable)."""
    lo = disparity.amin(dim=(1, 2, 3), keepdim=True)
    hi = disparity.amax(dim=(1, 2, 3), keepdim=True)
    return (disparity - lo) / (hi - lo).clamp_min(1e-6 * hi.abs().clamp_min(1e-12))


def semantic_loss(embeds: Tensor, target: Tensor, weights: Tensor | None = None) -> Tensor:
    """Mean spherical distance between cutout embeddings and the target image's embedding.

    Args:
        embeds: :math:`(N, D)` cutout embeddings.
        target: :math:`(D,)` the target image's embedding.
        weights: :math:`(N,)` per-cutout weights (a mask), or ``None``.

    Returns:
        Scalar.
    """
    distance = spherical_distance(F.normalize(embeds, dim=-1), F.normalize(target, dim=-1)[None]).reshape(-1)
    if weights is not None:
        distance = distance * weights.to(distance)
    return distance.mean()


@dataclass
class FrameTarget:
    """One frame's stabilization target and the features computed from it once.

    Attributes:
        frame: the output frame (1-based).
        image: :math:`(1, 3, H, W)` the target.
        valid: :math:`(1, 1, H, W)` reliable pixels (video), or ``None``.
        weights: the frame's non-zero loss weights by name.
        masks: this frame's masks by loss name, :math:`(1, 1, H, W)`.
        edges: Sobel edges of the target (when ``edge`` is on).
        depth: unit disparity of the target (when ``depth`` is on).
        embeds: the target's embedding per perceptor index (``semantic``, filled on first use).
    """

    frame: int
    image: Tensor
    valid: Tensor | None
    weights: dict[str, float]
    masks: dict[str, Tensor] = field(default_factory=dict)
    edges: Tensor | None = None
    depth: Tensor | None = None
    embeds: dict[int, Tensor] = field(default_factory=dict)


@dataclass
class Stabilizer:
    """Holds the current frame's target and computes the stabilization losses for the renderer.

    Attributes:
        masks: mask files by loss name (image or video; see :func:`load_mask`).
        depth_model: the depth estimator for the ``depth`` loss, or ``None``.
        fps: frame rate the video masks are decoded at.
        frame_stride: video masks advance this many frames per output frame.
        current: the target of the frame being optimized (set by :meth:`begin_frame`).
    """

    masks: dict[str, Path] = field(default_factory=dict)
    depth_model: DepthEstimator | None = None
    fps: float = 12.0
    frame_stride: int = 1
    current: FrameTarget | None = None
    _decoded: dict[Path, Tensor] = field(default_factory=dict)

    @classmethod
    def from_scene(cls, scene: Any, depth_model: DepthEstimator | None) -> Stabilizer:
        """The stabilizer of a validated scene (masks resolved, depth model shared with the 3D warp)."""
        stab = scene.stabilization
        masks = {name: getattr(stab, f"{name}_mask") for name in (*PIXEL_LOSSES, "semantic")}
        return cls(
            masks={k: Path(v) for k, v in masks.items() if v is not None},
            depth_model=depth_model,
            fps=float(scene.fps),
            frame_stride=int(getattr(scene, "frame_stride", 1)) if scene.animation == "video" else 1,
        )

    @torch.no_grad()
    def begin_frame(self, frame: int, weights: dict[str, float], image: Tensor, valid: Tensor | None) -> None:
        """Set the target of output ``frame`` (called by ``apply_motion`` right after the motion)."""
        active = {k: float(v) for k, v in weights.items() if v}
        target = FrameTarget(frame=frame, image=image, valid=valid, weights=active)
        for name in active:
            if name in self.masks:
                target.masks[name] = self.mask(name, frame, image.shape[-2:], image.device)
        if "edge" in active:
            target.edges = sobel_edges(image)
        if "depth" in active:
            if self.depth_model is None:
                raise ValueError("the depth stabilization loss needs a depth model (depth_model: a folder)")
            target.depth = unit_disparity(self.depth_model(image))
        self.current = target

    def wants_semantic(self, frame: int) -> bool:
        """Whether ``frame`` has a non-zero ``semantic`` weight (the renderer then runs its perceptors)."""
        target = self.target_for(frame)
        return target is not None and bool(target.weights.get("semantic"))

    def target_for(self, frame: int) -> FrameTarget | None:
        """The target if it belongs to ``frame`` (never a stale one from another frame or render)."""
        current = self.current
        return current if current is not None and current.frame == frame else None

    def mask(self, name: str, frame: int, size: torch.Size | tuple[int, ...], device: torch.device) -> Tensor:
        """Loss ``name``'s mask for output ``frame``, :math:`(1, 1, H, W)` in [0, 1]."""
        path = self.masks[name]
        if path not in self._decoded:
            self._decoded[path] = load_mask(path, (int(size[-1]), int(size[-2])), self.fps)
        stack = self._decoded[path]  # (T, 1, H, W)
        index = min((frame - 1) * self.frame_stride, stack.shape[0] - 1)
        return stack[index : index + 1].to(device)

    def pixel_loss(self, image: Tensor, frame: int) -> Tensor | None:
        """The weighted sum of the ``direct``/``edge``/``depth``/``flow`` losses for this step, or ``None``.

        Args:
            image: :math:`(1, 3, H, W)` the decoded image (differentiable).
            frame: the output frame being optimized.
        """
        target = self.target_for(frame)
        if target is None:
            return None
        terms: list[Tensor] = []
        for name in PIXEL_LOSSES:
            weight = target.weights.get(name)
            if weight:
                terms.append(weight * self._term(name, image, target))
        if not terms:
            return None
        total = terms[0]
        for term in terms[1:]:
            total = total + term
        return total

    def _term(self, name: str, image: Tensor, target: FrameTarget) -> Tensor:
        mask = target.masks.get(name)
        if name == "direct":
            return masked_mse(image, target.image, mask)
        if name == "edge":
            assert target.edges is not None
            return edge_loss(image, target.edges, mask)
        if name == "depth":
            assert target.depth is not None and self.depth_model is not None
            return masked_mse(unit_disparity(self.depth_model(image)), target.depth, mask)
        valid = target.valid if target.valid is not None else None
        combined = valid if mask is None else (mask if valid is None else mask * valid)
        return masked_mse(image, target.image, combined)

    def semantic(
        self, frame: int, index: int, embeds: Tensor, cuts: Any, encode: Any, input_size: int
    ) -> Tensor | None:
        """The weighted ``semantic`` loss for one perceptor's cutouts, or ``None`` when off.

        Args:
            frame: the output frame being optimized.
            index: the perceptor's index (its target embedding is cached per frame).
            embeds: :math:`(N, D)` this step's cutout embeddings.
            cuts: the step's cutouts (``offsets``, ``sizes``: :math:`(N, 2)` normalized), for the mask.
            encode: the perceptor's ``encode_image`` (images :math:`(B, 3, S, S)` -> :math:`(B, D)`).
            input_size: the perceptor's input size ``S``.
        """
        target = self.target_for(frame)
        weight = None if target is None else target.weights.get("semantic")
        if target is None or not weight:
            return None
        if index not in target.embeds:
            with torch.no_grad():
                resized = F.interpolate(
                    target.image, size=(input_size, input_size), mode="bilinear", antialias=True
                )
                target.embeds[index] = encode(resized)[0].float().detach()
        weights = None
        if "semantic" in target.masks:
            from pytti_engine.masks import image_mask_weights

            weights = image_mask_weights(target.masks["semantic"][0, 0], cuts.offsets, cuts.sizes)
        return weight * semantic_loss(embeds, target.embeds[index].to(embeds), weights)


def load_mask(path: Path, size: tuple[int, int], fps: float) -> Tensor:
    """A mask image or video as :math:`(T, 1, H, W)` float in [0, 1] (``T = 1`` for an image).

    Args:
        path: a greyscale (or RGB: its luma) image, or a video decoded at ``fps``.
        size: ``(W, H)``.
        fps: frame rate for a video mask.
    """
    if path.suffix.lower() in MASK_SUFFIXES_VIDEO:
        from pytti_engine.video_source import decode_source

        frames = decode_source(path, fps, size)  # (T, H, W, 3)
        luma = frames.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        return torch.from_numpy(luma / 255.0).unsqueeze(1)
    from pytti_engine.io import load_image

    rgb = load_image(path, size)
    return rgb_to_grayscale(rgb)
