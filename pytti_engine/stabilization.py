"""Stabilization losses: keep each frame close to what the motion predicts (PyTTI's ``*_stabilization_weight``).

The target of frame N (as PyTTI): in ``2d``/``3d``/``off`` the image right after the motion into N (the
warped previous frame, :class:`~pytti_engine.motion.MotionOutcome`); in ``video`` the new source frame,
except for ``flow``, whose target is the flow-warped previous output. Frame 1 has no target. Each loss
has a per-frame weight (the plan's ``stabilization`` values, expressions of ``t``) and an optional mask
image or video (white = stabilize, black = free):

=========  ==============================================================================================
direct     PyTTI's ``HSVLoss``: ``mean(mask · (x - target)²)`` over ``[R, G, B, S, V]`` of both
           (``direct_space: rgb``: over ``[R, G, B]`` only); a VQGAN uses PyTTI's ``LatentLoss`` instead
edge       the same on Sobel gradients of the luma (``kornia.filters.spatial_gradient``, normalized)
depth      the same on the depth model's normalized disparity of image and target (needs a model folder)
flow       ``video``: the RGB loss restricted to pixels whose flow passed the forward-backward check;
           otherwise PyTTI's ``TargetFlowLoss``: the optical flow from the previous frame (before the
           motion) to the image, estimated with gradient every step, against the motion's own flow:
           ``mean(mask · |flow - target|²) / max(mean |target|², 1 px²)``
semantic   PyTTI's stabilization prompt: the target's cutouts are embedded once per frame and perceptor,
           each step's cutouts are paired with them by position (Hungarian matching of the centres, as a
           semantic image prompt), distance + 0.7; a mask weights cutouts by their mean mask value
=========  ==============================================================================================

The pure loss functions take tensors; :class:`Stabilizer` holds the per-frame target, the precomputed
target features, and the decoded masks (built once per render, owned by the
:class:`~pytti_engine.motion.MotionRuntime`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from kornia.color import rgb_to_grayscale
from kornia.filters import spatial_gradient
from torch import Tensor

from pytti_engine.checks import check_shape
from pytti_engine.cutouts import CutoutConfig, Cutouts
from pytti_engine.depth import DepthEstimator
from pytti_engine.devices import make_generator
from pytti_engine.losses import hsv_target
from pytti_engine.optical_flow import DifferentiableFlow

if TYPE_CHECKING:  # the perceptor modules import open_clip: only the semantic loss needs them, lazily
    from pytti_engine.perceptors import Perceptor
    from pytti_engine.prompts import ImagePromptTarget

PIXEL_LOSSES = ("direct", "edge", "depth", "flow")
FLOW_MAGNITUDE_FLOOR = 1.0
"""Smallest ``mean |target flow|²`` (px²) the flow loss divides by (PyTTI divides by it unguarded)."""
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


@dataclass
class FrameTarget:
    """One frame's stabilization target and the features computed from it once.

    Attributes:
        frame: the output frame (1-based).
        image: :math:`(1, 3, H, W)` the target of ``direct``, ``edge``, ``depth`` and ``semantic``.
        valid: :math:`(1, 1, H, W)` reliable pixels (video), or ``None``.
        weights: the frame's non-zero loss weights by name.
        masks: this frame's masks by loss name, :math:`(1, 1, H, W)`.
        edges: Sobel edges of the target (when ``edge`` is on).
        depth: unit disparity of the target (when ``depth`` is on).
        hsv: ``[R, G, B, S, V]`` of the target (when ``direct`` is on in HSV).
        latent: a VQGAN image's quantized latent of the target (``direct``, made on first use).
        flow_image: :math:`(1, 3, H, W)` the target of video mode's ``flow`` loss (the flow-warped output).
        previous: :math:`(1, 3, H, W)` the previous frame before the motion (the flow loss outside video).
        motion: :math:`(1, 2, H, W)` the motion's backward flow ``s(p) - p`` (the flow loss outside video).
        motion_valid: :math:`(1, 1, H, W)` pixels whose source lies inside the previous frame.
        embeds: the target's cutouts per perceptor index (``semantic``, embedded on first use).
    """

    frame: int
    image: Tensor
    valid: Tensor | None
    weights: dict[str, float]
    masks: dict[str, Tensor] = field(default_factory=dict)
    edges: Tensor | None = None
    depth: Tensor | None = None
    hsv: Tensor | None = None
    latent: Tensor | None = None
    flow_image: Tensor | None = None
    previous: Tensor | None = None
    motion: Tensor | None = None
    motion_valid: Tensor | None = None
    embeds: dict[int, ImagePromptTarget] = field(default_factory=dict)


@dataclass
class Stabilizer:
    """Holds the current frame's target and computes the stabilization losses for the renderer.

    Attributes:
        masks: mask files by loss name (image or video; see :func:`load_mask`).
        depth_model: the depth estimator for the ``depth`` loss, or ``None``.
        fps: frame rate the video masks are decoded at.
        frame_stride: video masks advance this many frames per output frame.
        direct_space: ``hsv`` (PyTTI's ``[R, G, B, S, V]``) or ``rgb``.
        flow_model: the differentiable flow estimator of the ``flow`` loss outside video mode, or ``None``.
        seed: the render's seed (the semantic target's cutouts are drawn from it and the frame).
        current: the target of the frame being optimized (set by :meth:`begin_frame`).
    """

    masks: dict[str, Path] = field(default_factory=dict)
    depth_model: DepthEstimator | None = None
    fps: float = 12.0
    frame_stride: int = 1
    direct_space: str = "hsv"
    flow_model: DifferentiableFlow | None = None
    seed: int = 0
    current: FrameTarget | None = None
    _decoded: dict[Path, Tensor] = field(default_factory=dict)

    @classmethod
    def from_scene(
        cls, scene: Any, depth_model: DepthEstimator | None, device: torch.device | None = None
    ) -> Stabilizer:
        """The stabilizer of a validated scene (masks resolved, depth model shared with the 3D warp; the
        differentiable flow estimator made when ``flow`` is on outside video mode).

        Raises:
            ModelLoadError: ``flow_model: raft`` weights cannot be loaded.
        """
        from pytti_engine.optical_flow import differentiable_flow

        stab = scene.stabilization
        masks = {name: getattr(stab, f"{name}_mask") for name in (*PIXEL_LOSSES, "semantic")}
        flow_model = None
        if scene.animation != "video" and not (stab.flow.is_constant and stab.flow.value == 0):
            flow_model = differentiable_flow(
                scene.flow_model, device or torch.device("cpu"), weights=scene.flow_weights
            )
        return cls(
            masks={k: Path(v) for k, v in masks.items() if v is not None},
            depth_model=depth_model,
            fps=float(scene.fps),
            frame_stride=int(getattr(scene, "frame_stride", 1)) if scene.animation == "video" else 1,
            direct_space=str(stab.direct_space),
            flow_model=flow_model,
            seed=int(scene.seed),
        )

    @torch.no_grad()
    def begin_frame(
        self,
        frame: int,
        weights: dict[str, float],
        image: Tensor,
        valid: Tensor | None,
        *,
        flow_image: Tensor | None = None,
        previous: Tensor | None = None,
        motion: Tensor | None = None,
        motion_valid: Tensor | None = None,
    ) -> None:
        """Set the targets of output ``frame`` (called by ``apply_motion`` right after the motion).

        Args:
            frame: the output frame.
            weights: the frame's loss weights by name.
            image: :math:`(1, 3, H, W)` the target of ``direct``/``edge``/``depth``/``semantic``.
            valid: :math:`(1, 1, H, W)` video mode's reliable pixels, or ``None``.
            flow_image: video mode: the target of ``flow`` (the flow-warped output); default ``image``.
            previous: outside video: the previous frame before the motion.
            motion: outside video: :math:`(1, 2, H, W)` the motion's backward flow ``s(p) - p``.
            motion_valid: outside video: :math:`(1, 1, H, W)` pixels whose source is inside the frame.
        """
        active = {k: float(v) for k, v in weights.items() if v}
        target = FrameTarget(frame=frame, image=image, valid=valid, weights=active)
        target.flow_image = image if flow_image is None else flow_image
        target.previous, target.motion, target.motion_valid = previous, motion, motion_valid
        for name in active:
            if name in self.masks:
                target.masks[name] = self.mask(name, frame, image.shape[-2:], image.device)
        if "direct" in active and self.direct_space == "hsv":
            target.hsv = hsv_target(image)
        if "flow" in active and valid is None:
            if self.flow_model is None or previous is None or motion is None:
                raise ValueError("the flow stabilization loss needs the previous frame and the motion's flow")
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

    def pixel_loss(self, image: Tensor, frame: int, model: Any = None) -> Tensor | None:
        """The weighted sum of the ``direct``/``edge``/``depth``/``flow`` losses for this step, or ``None``.

        Args:
            image: :math:`(1, 3, H, W)` the decoded image (differentiable).
            frame: the output frame being optimized.
            model: the image model; a VQGAN makes ``direct`` PyTTI's ``LatentLoss``.
        """
        target = self.target_for(frame)
        if target is None:
            return None
        terms: list[Tensor] = []
        for name in PIXEL_LOSSES:
            weight = target.weights.get(name)
            if weight:
                terms.append(weight * self._term(name, image, target, model))
        if not terms:
            return None
        total = terms[0]
        for term in terms[1:]:
            total = total + term
        return total

    def _term(self, name: str, image: Tensor, target: FrameTarget, model: Any = None) -> Tensor:
        mask = target.masks.get(name)
        if name == "direct":
            from pytti_engine.image_params.vqgan import VQGANImage

            if isinstance(model, VQGANImage):  # PyTTI's preferred loss of a VQGAN: LatentLoss
                return _latent_direct(model, image, target, mask)
            if target.hsv is not None:
                return masked_mse(hsv_target(image), target.hsv, mask)
            return masked_mse(image, target.image, mask)
        if name == "edge":
            assert target.edges is not None
            return edge_loss(image, target.edges, mask)
        if name == "depth":
            assert target.depth is not None and self.depth_model is not None
            return masked_mse(unit_disparity(self.depth_model(image)), target.depth, mask)
        if target.valid is None:  # outside video: PyTTI's TargetFlowLoss
            assert self.flow_model is not None and target.previous is not None and target.motion is not None
            return flow_loss(
                self.flow_model, image, target.previous, target.motion, _both(mask, target.motion_valid)
            )
        assert target.flow_image is not None
        return masked_mse(image, target.flow_image, _both(mask, target.valid))

    def semantic(
        self,
        frame: int,
        index: int,
        embeds: Tensor,
        cuts: Cutouts,
        perceptor: Perceptor,
        config: CutoutConfig,
    ) -> Tensor | None:
        """The weighted ``semantic`` loss for one perceptor's cutouts, or ``None`` when off.

        PyTTI's stabilization prompt: the target is cut ``config.cutouts`` times (from a generator seeded
        by the render's seed, the frame and the perceptor, so a resumed frame repeats itself) and
        embedded once per frame; each step's cutouts are paired with those by position and compared
        (:func:`~pytti_engine.prompts.image_prompt_loss`, distance + 0.7).

        Args:
            frame: the output frame being optimized.
            index: the perceptor's index.
            embeds: :math:`(N, D)` this step's cutout embeddings.
            cuts: the step's cutouts (their centres, and sizes for a mask).
            perceptor: the perceptor (it embeds the target's cutouts).
            config: the cutout config for the target (at least ``N`` cutouts).
        """
        from pytti_engine.prompts import embed_image_prompt, image_prompt_loss

        target = self.target_for(frame)
        weight = None if target is None else target.weights.get("semantic")
        if target is None or not weight:
            return None
        if index not in target.embeds:
            generator = make_generator(self.seed, frame, f"semantic-stabilization/{index}")
            picture = target.image.to(perceptor.device)
            target.embeds[index] = embed_image_prompt([perceptor], picture, [config], generator)
        weights: float | Tensor = weight
        if "semantic" in target.masks:
            from pytti_engine.masks import image_mask_weights

            weights = weight * image_mask_weights(target.masks["semantic"][0, 0], cuts.offsets, cuts.sizes)
        return image_prompt_loss(target.embeds[index], 0, embeds, cuts, weights, None)


def _latent_direct(model: Any, image: Tensor, target: FrameTarget, mask: Tensor | None) -> Tensor:
    """PyTTI's ``LatentLoss`` to the target: ``MSE(quantized latent) / 2 + MSE(pixels) / 10`` (masked; the
    mask is area-averaged onto the latent grid)."""
    if target.latent is None:
        target.latent = model.encode_target(target.image)
    latent = model.quantized_latent()
    small = (
        None if mask is None else F.adaptive_avg_pool2d(mask, (int(latent.shape[-2]), int(latent.shape[-1])))
    )
    return masked_mse(latent, target.latent, small) / 2 + masked_mse(image, target.image, mask) / 10


def _both(a: Tensor | None, b: Tensor | None) -> Tensor | None:
    """The product of two optional masks."""
    return a if b is None else (b if a is None else a * b)


def flow_loss(
    estimator: DifferentiableFlow, image: Tensor, previous: Tensor, motion: Tensor, mask: Tensor | None = None
) -> Tensor:
    """PyTTI's ``TargetFlowLoss``: the estimated flow from ``previous`` to ``image`` against ``motion``.

    ``mean(mask · |estimator(image, previous) - motion|²) / max(mean |motion|², 1 px²)``: the image is
    pulled toward a picture that the flow estimator sees moving as the camera moved, whatever its
    colours do (unlike ``direct``, which pulls the pixels themselves).

    Args:
        estimator: a differentiable backward-flow estimator (``image(p) ≈ previous(p + flow(p))``).
        image: :math:`(1, 3, H, W)` the current image (differentiable).
        previous: :math:`(1, 3, H, W)` the previous frame before the motion.
        motion: :math:`(1, 2, H, W)` the motion's backward flow ``s(p) - p`` in pixels.
        mask: :math:`(1, 1, H, W)` in [0, 1], or ``None``.

    Returns:
        Scalar.
    """
    check_shape(motion, "1 2 H W")
    estimate = estimator(image, previous)
    magnitude = motion.pow(2).sum(1).mean().clamp_min(FLOW_MAGNITUDE_FLOOR)
    return masked_mse(estimate, motion.to(estimate), mask) / magnitude


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
