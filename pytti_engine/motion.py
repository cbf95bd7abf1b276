"""Camera motion between frames: what happens to the state at a frame boundary, by animation mode.

``apply_motion`` is the one entry point the renderer (and ``pytti preview``) calls before optimizing
frame N (N > 1). It moves the image, and the optimizer's per-pixel moments with it, so Adam's statistics
stay aligned with the content they were accumulated on. It returns what stabilization losses compare
against (:class:`MotionOutcome`).

Modes: ``off`` keeps the image; ``2d`` applies the frame's affine motion about the centre
(:mod:`pytti_engine.warps.affine`); ``3d`` reprojects through the depth of the previous image
(:mod:`pytti_engine.warps.warp3d`, depth from :class:`~pytti_engine.depth.DepthProvider`); ``video``
warps by the optical flow between source frames and re-initializes occluded pixels from the source
(:mod:`pytti_engine.video_source`). The resources 3D and video need (the depth model, the decoded video
and its flows) live in a :class:`MotionRuntime` built once per render.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from kornia.geometry import create_meshgrid
from torch import Tensor

from pytti_engine.depth import DepthProvider, DepthScale, load_depth_model
from pytti_engine.errors import PyttiError
from pytti_engine.stabilization import Stabilizer
from pytti_engine.state import RenderState, optimizer_state_tensors
from pytti_engine.types import PaddingMode, SamplingMode
from pytti_engine.warps import Motion2D, sample_pixels, warp_2d
from pytti_engine.warps.affine import affine_displacement, affine_grid
from pytti_engine.warps.warp3d import (
    CameraModel,
    Motion3D,
    grid_displacement,
    pytti_reprojection_grid,
    reprojection_grid_from_previous,
)

Warp = Callable[[Tensor], Tensor]


class MotionFrame(Protocol):
    """The motion values of one frame of the plan (``zoom_x``, ``zoom_y``, ``translate_z`` and
    ``rotate_3d`` are read when present, with identity defaults)."""

    @property
    def index(self) -> int: ...
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


@dataclass(frozen=True)
class CameraSettings:
    """The 3D camera of a scene (see :mod:`pytti_engine.warps.warp3d` for the conventions).

    Attributes:
        field_of_view: vertical, degrees in (0, 180).
        near_plane: depth in pixels of the nearest point.
        far_plane: depth in pixels of the farthest point.
        lock_camera: remove the mean image motion.
        depth_model: a model folder / hub id, ``"flat"``, or ``None`` (not 3D).
        flat_depth: ``depth_model: flat``: the depth of every pixel (``None`` = the focal distance).
        camera_model: ``pinhole`` (exact reprojection) or ``pytti`` (pytti-core's formula).
    """

    field_of_view: float = 60.0
    near_plane: float = 200.0
    far_plane: float = 10000.0
    lock_camera: bool = True
    depth_model: str | None = None
    flat_depth: float | None = None
    camera_model: CameraModel = "pinhole"

    @classmethod
    def from_scene(cls, scene: Any) -> CameraSettings:
        """Pick the camera settings out of a validated ``Scene``."""
        return cls(
            field_of_view=float(scene.field_of_view),
            near_plane=float(scene.near_plane),
            far_plane=float(scene.far_plane),
            lock_camera=bool(scene.lock_camera),
            depth_model=scene.depth_model,
            flat_depth=None if scene.flat_depth is None else float(scene.flat_depth),
            camera_model=scene.camera_model,
        )

    def depth_provider(self, device: torch.device) -> DepthProvider:
        """The depth this camera warps with: its model (loaded here) or flat.

        Raises:
            ModelLoadError: the depth model cannot be loaded.
        """
        estimator = None
        if self.depth_model not in (None, "flat"):
            estimator = load_depth_model(str(self.depth_model), device)
        return DepthProvider(
            estimator, self.near_plane, self.far_plane, self.field_of_view, flat=self.flat_depth
        )


@dataclass(frozen=True)
class MotionOutcome:
    """What the motion step leaves for the frame's stabilization losses.

    Attributes:
        target: :math:`(1, 3, H, W)` the image right after the motion (detached): the warped previous
            frame, or the video's re-encoded frame.
        valid: :math:`(1, 1, H, W)` 1 where the target is reliable (flow not occluded), or ``None``.
        source: :math:`(1, 3, H, W)` the current source-video frame (video mode), or ``None``.
        previous: :math:`(1, 3, H, W)` the previous frame before the motion (``off``/``2d``/``3d``).
        flow: :math:`(1, 2, H, W)` the motion's backward flow ``s(p) - p``: where each new pixel came from
            (``off``/``2d``/``3d``; zero for ``off`` and still frames).
        flow_valid: :math:`(1, 1, H, W)` 1 where that source lies inside the previous frame.
    """

    target: Tensor
    valid: Tensor | None = None
    source: Tensor | None = None
    previous: Tensor | None = None
    flow: Tensor | None = None
    flow_valid: Tensor | None = None


@dataclass
class MotionRuntime:
    """Resources motion needs beyond the plan, built once per render (holds loaded models and caches).

    Attributes:
        camera: the 3D camera settings.
        depth: depth for ``animation: 3d`` (``None`` otherwise).
        video: the decoded source video and its flows for ``animation: video`` (``None`` otherwise).
    """

    camera: CameraSettings
    depth: DepthProvider | None = None
    video: Any = None  # pytti_engine.video_source.VideoSource (imported lazily: it needs opencv)
    stabilizer: Stabilizer | None = None

    @classmethod
    def from_scene(cls, scene: Any, device: torch.device, *, flow_dir: Path | None = None) -> MotionRuntime:
        """Load what ``scene``'s animation mode needs (the depth model for 3D, the video for video).

        Args:
            scene: the validated scene.
            device: where the render runs.
            flow_dir: video mode: flows precomputed by
                :func:`pytti_engine.video_source.precompute_flows` (missing ones are computed).

        Raises:
            ModelLoadError: the depth model or the flow backend cannot be loaded.
        """
        camera = CameraSettings.from_scene(scene)
        depth = None
        if scene.animation == "3d" or _uses_depth_loss(scene):
            depth = camera.depth_provider(device)
        video = None
        if scene.animation == "video":
            from pytti_engine.video_source import VideoSource

            video = VideoSource.from_scene(scene, device, flow_dir=flow_dir)
        stabilizer = None
        if _uses_stabilization(scene):
            stabilizer = Stabilizer.from_scene(scene, None if depth is None else depth.estimator, device)
        return cls(camera=camera, depth=depth, video=video, stabilizer=stabilizer)

    def initial_image(self) -> Tensor | None:
        """The start image motion implies when the scene has no ``init_image`` (video: the first source
        frame), or ``None``."""
        return None if self.video is None else self.video.source(1)


def _uses_stabilization(scene: Any) -> bool:
    stab = getattr(scene, "stabilization", None)
    if stab is None:
        return False
    weights = (getattr(stab, name) for name in ("direct", "semantic", "edge", "depth", "flow"))
    return any(not (w.is_constant and w.value == 0) for w in weights)


def _uses_depth_loss(scene: Any) -> bool:
    stab = getattr(scene, "stabilization", None)
    return stab is not None and not (stab.depth.is_constant and stab.depth.value == 0)


def motion_fingerprint(scene: Any) -> dict[str, Any]:
    """The motion settings that affect pixels beyond the plan's per-frame values (for frame keys).

    Empty for ``off``/``2d`` scenes, so their frame keys do not change.
    """
    out: dict[str, Any] = {}
    if scene.animation == "3d" or _uses_depth_loss(scene):
        camera = CameraSettings.from_scene(scene)
        out["camera"] = {**camera.__dict__}
    if scene.animation == "video":
        out["video"] = {
            "video_path": str(scene.video_path),
            "frame_stride": scene.frame_stride,
            "flow_model": scene.flow_model,
            "flow_weights": None if scene.flow_weights is None else str(scene.flow_weights),
            "reencode_each_frame": scene.reencode_each_frame,
        }
    masks = {k: str(v) for k, v in scene.stabilization.model_dump().items() if k.endswith("_mask") and v}
    if masks:
        out["stabilization_masks"] = masks
    if _uses_stabilization(scene):  # the losses' definitions (issue 14: PyTTI's), so older frames re-render
        out["stabilization_losses"] = {
            "direct": scene.stabilization.direct_space,
            "semantic": "cutouts paired by position",
            "flow": "target flow" if scene.animation != "video" else "flow-warped output",
            "video_target": "source frame",
        }
    return out


def frame_motion(frame: MotionFrame) -> Motion2D:
    """The 2D camera motion of one frame of the plan."""
    return Motion2D(
        translate_x=frame.translate_x,
        translate_y=frame.translate_y,
        rotate=frame.rotate_2d,
        zoom=frame.zoom,
        zoom_x=float(getattr(frame, "zoom_x", 1.0)),
        zoom_y=float(getattr(frame, "zoom_y", 1.0)),
    )


def frame_motion_3d(frame: MotionFrame) -> Motion3D:
    """The 3D camera motion of one frame of the plan."""
    return Motion3D(
        translate_x=frame.translate_x,
        translate_y=frame.translate_y,
        translate_z=float(getattr(frame, "translate_z", 0.0)),
        rotate=tuple(float(v) for v in getattr(frame, "rotate_3d", (0.0, 0.0, 0.0))),
    )


@torch.no_grad()
def warp_state(state: RenderState, image_warp: Warp, moment_warp: Warp) -> None:
    """Move the image by ``image_warp`` and Adam's moments by ``moment_warp`` (second moments kept >= 0)."""
    state.image.apply_warp(image_warp)
    for param_state in optimizer_state_tensors(state):
        if "exp_avg" in param_state:
            first, second = param_state["exp_avg"], param_state["exp_avg_sq"]
            # Both moments in one resampling call (same grid): (1, 2C, h, w).
            moved = moment_warp(torch.cat([first, second], dim=1))
            first.copy_(moved[:, : first.shape[1]])
            second.copy_(moved[:, first.shape[1] :].clamp_(min=0))


@torch.no_grad()
def warp_state_2d(state: RenderState, motion: Motion2D, infill: PaddingMode, sampling: SamplingMode) -> None:
    """Move the image by ``motion``, and Adam's moments with it (bilinear).

    ``motion`` is in pixels of the image model's grid; a tensor of another size (a VQGAN latent, or the
    decoded picture of a latent model) moves by the same fraction of the frame.
    """
    grid = state.image.config.grid
    image_warp = warp_2d_sized(motion, grid, infill, sampling)
    warp_state(state, image_warp, warp_2d_sized(motion, grid, infill, "bilinear"))


def warp_2d_sized(
    motion: Motion2D, reference: tuple[int, int], infill: PaddingMode, sampling: SamplingMode
) -> Warp:
    """:func:`warp_2d` by a motion given in pixels of a ``reference`` (height, width) grid, for any size.

    A tensor of the reference size is warped by ``motion`` itself; another size gets the translation
    scaled by the size ratio (cells of a latent grid are ``reference / size`` pixels wide), so the content
    moves by the same fraction of the frame. Rotation and zoom are about the centre and need no scaling.
    """

    def warp(x: Tensor) -> Tensor:
        height, width = int(x.shape[-2]), int(x.shape[-1])
        moved = motion
        if (height, width) != tuple(reference):
            moved = replace(
                motion,
                translate_x=motion.translate_x * width / reference[1],
                translate_y=motion.translate_y * height / reference[0],
            )
        return warp_2d(x, moved, infill=infill, sampling=sampling)

    return warp


def grid_warp(grid: Tensor, infill: PaddingMode, sampling: SamplingMode) -> Warp:
    """A warp by a fixed backward ``grid`` (pixel coordinates of the grid's own size).

    A tensor of another size (a low-resolution image parameter) is warped by the grid resized to it,
    with its pixel coordinates scaled by the size ratio.
    """

    def warp(x: Tensor) -> Tensor:
        g = grid
        if x.shape[-2:] != grid.shape[1:3]:
            g = _resize_grid(grid, (int(x.shape[-2]), int(x.shape[-1])))
        return sample_pixels(x, g.to(x.device), padding=infill, sampling=sampling)

    return warp


def _resize_grid(grid: Tensor, size: tuple[int, int]) -> Tensor:
    """A pixel-coordinate grid ``(B, H, W, 2)`` resampled to ``size`` with coordinates rescaled."""
    height, width = grid.shape[1:3]
    scale = grid.new_tensor([(size[1] - 1) / max(width - 1, 1), (size[0] - 1) / max(height - 1, 1)])
    resized = F.interpolate(grid.permute(0, 3, 1, 2), size=size, mode="bilinear", align_corners=True)
    return resized.permute(0, 2, 3, 1) * scale


def grid_3d(image: Tensor, motion: Motion3D, runtime: MotionRuntime) -> Tensor:
    """The 3D backward grid for ``image``: its depth (cached; the render's fixed depth scale), reprojected.

    ``camera_model: pinhole`` solves for the depth each new pixel sees
    (:func:`~pytti_engine.warps.warp3d.reprojection_grid_from_previous`); ``pytti`` applies pytti-core's
    formula (:func:`~pytti_engine.warps.warp3d.pytti_reprojection_grid`).
    """
    if runtime.depth is None:
        raise PyttiError("animation: 3d needs a depth provider (MotionRuntime.from_scene builds it)")
    depth = runtime.depth.depth(image)
    camera = runtime.camera
    if camera.camera_model == "pytti":
        return pytti_reprojection_grid(depth, motion, camera.field_of_view, lock_camera=camera.lock_camera)
    return reprojection_grid_from_previous(
        depth, motion, camera.field_of_view, lock_camera=camera.lock_camera
    )


@torch.no_grad()
def motion_flow(
    previous: Tensor, frame: MotionFrame, animation: str, runtime: MotionRuntime | None = None
) -> Tensor:
    """The motion field :func:`apply_motion` carries the previous frame by into ``frame`` (for export).

    Convention:
        - pixels, channel 0 = x (right), channel 1 = y (down on screen);
        - the field lives on the **new** frame's pixels: ``d(p) = p - s(p)``, where ``s(p)`` is where the
          warp samples pixel ``p`` from in the previous frame (the negated backward flow), so content
          that moved 2 px right reads ``(2, 0)``;
        - ``off``: zero; ``2d``: :func:`~pytti_engine.warps.affine.affine_displacement` of the frame's
          :class:`Motion2D` (the warp's own matrix); ``3d``: the reprojection of :func:`grid_3d` through
          the depth of ``previous`` (zero where the source fell behind the camera); ``video``: the
          source-video backward flow into ``frame`` (``runtime.video.flow``), negated.

    Args:
        previous: :math:`(1, 3, H, W)` the previous frame in [0, 1] (read for its depth in ``3d``, and its
            size).
        frame: the frame being entered (its plan values, ``index > 1``).
        animation: ``off`` | ``2d`` | ``3d`` | ``video``.
        runtime: depth (``3d``) or source video (``video``) resources.

    Returns:
        :math:`(1, 2, H, W)` float32 displacement in pixels.

    Raises:
        PyttiError: ``3d``/``video`` without the runtime they need, or an unknown mode.
    """
    height, width = int(previous.shape[-2]), int(previous.shape[-1])
    device = previous.device
    if animation == "off":
        return torch.zeros(1, 2, height, width, device=device)
    if animation == "2d":
        return affine_displacement(frame_motion(frame), height, width, device=device)
    if animation == "3d":
        motion3 = frame_motion_3d(frame)
        if motion3.is_identity():
            return torch.zeros(1, 2, height, width, device=device)
        if runtime is None:
            raise PyttiError("animation: 3d needs a MotionRuntime (depth model)")
        return grid_displacement(grid_3d(previous, motion3, runtime)).float()
    if animation == "video":
        if runtime is None or runtime.video is None:
            raise PyttiError("animation: video needs a MotionRuntime with the source video")
        backward: Tensor = runtime.video.flow(frame.index).backward
        return -backward.to(device=device, dtype=torch.float32)
    raise PyttiError(f"unknown animation mode '{animation}'")


def apply_motion(
    state: RenderState, frame: MotionFrame, settings: MotionSettings, runtime: MotionRuntime | None = None
) -> MotionOutcome:
    """Advance ``state`` across the boundary into ``frame`` according to ``settings.animation``.

    Args:
        state: the state after the previous frame; changed in place.
        frame: the frame being entered (its plan values).
        settings: animation mode, infill and sampling.
        runtime: depth / video resources; required for ``3d`` and ``video``.

    Returns:
        The stabilization target (the image right after the motion) and, for video, the valid mask and
        source frame.

    Raises:
        PyttiError: ``3d``/``video`` without a runtime.
    """
    outcome = _move(state, frame, settings, runtime)
    if runtime is not None and runtime.stabilizer is not None:
        weights = dict(getattr(frame, "stabilization", ()))
        if outcome.source is not None:  # video, as PyTTI: the losses pull toward the new source frame,
            runtime.stabilizer.begin_frame(  # flow toward the flow-warped output
                frame.index, weights, outcome.source, outcome.valid, flow_image=outcome.target
            )
        else:
            runtime.stabilizer.begin_frame(
                frame.index,
                weights,
                outcome.target,
                None,
                previous=outcome.previous,
                motion=outcome.flow,
                motion_valid=outcome.flow_valid,
            )
    return outcome


def _move(
    state: RenderState, frame: MotionFrame, settings: MotionSettings, runtime: MotionRuntime | None
) -> MotionOutcome:
    """The mode-specific part of :func:`apply_motion`."""
    infill, sampling = settings.infill_mode, settings.sampling_mode
    if settings.animation == "video":
        if runtime is None or runtime.video is None:
            raise PyttiError("animation: video needs a MotionRuntime with the source video")
        outcome: MotionOutcome = runtime.video.advance(state, frame.index, infill, sampling)
        return outcome
    previous = state.image.decode().detach().clone()
    height, width = previous.shape[-2:]
    grid: Tensor | None = None
    if settings.animation == "2d":
        motion = frame_motion(frame)
        if not motion.is_identity():
            warp_state_2d(state, motion, infill, sampling)
            grid_height, grid_width = state.image.config.grid  # the 2D motion is in model pixels
            grid = affine_grid(motion, grid_height, grid_width, device=previous.device)
    elif settings.animation == "3d":
        motion3 = frame_motion_3d(frame)
        if not motion3.is_identity():
            if runtime is None:
                raise PyttiError("animation: 3d needs a MotionRuntime (depth model)")
            if runtime.depth is not None:  # the render's depth scale lives in its state (checkpointed)
                runtime.depth.scale = None if state.depth_scale is None else DepthScale(*state.depth_scale)
            grid = grid_3d(previous, motion3, runtime)
            if runtime.depth is not None and runtime.depth.scale is not None:
                state.depth_scale = (runtime.depth.scale.gain, runtime.depth.scale.offset)
            warp_state(state, grid_warp(grid, infill, sampling), grid_warp(grid, infill, "bilinear"))
    flow, inside = _backward_flow(grid, previous)
    return MotionOutcome(
        target=state.image.decode().detach().clone(), previous=previous, flow=flow, flow_valid=inside
    )


def _backward_flow(grid: Tensor | None, image: Tensor) -> tuple[Tensor, Tensor]:
    """``(s(p) - p, inside)`` of a backward grid (zero and all-inside without one), on ``image``'s pixels."""
    batch, _, height, width = image.shape
    if grid is None:
        return image.new_zeros(batch, 2, height, width), image.new_ones(batch, 1, height, width)
    if grid.shape[1:3] != (height, width):
        grid = _resize_grid(grid, (height, width))
    pixels = create_meshgrid(
        height, width, normalized_coordinates=False, device=grid.device, dtype=grid.dtype
    )
    x, y = grid[..., 0], grid[..., 1]
    inside = (x >= 0) & (x <= width - 1) & (y >= 0) & (y <= height - 1)
    flow = torch.where(inside.unsqueeze(-1), grid - pixels, torch.zeros_like(grid))
    return flow.permute(0, 3, 1, 2).to(image.dtype), inside.unsqueeze(1).to(image.dtype)
