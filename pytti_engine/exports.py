"""Extra per-frame outputs beside the frames (``export: [depth, flow]``), and their videos.

Depth maps: for every rendered frame, the depth the 3D warp of the *next* frame reads from it
(:class:`~pytti_engine.depth.DepthProvider`: the scene's ``depth_model`` mapped to
``[near_plane, far_plane]``, or flat), written as an 8-bit greyscale PNG of normalized inverse
depth: white = ``near_plane``, black = ``far_plane`` (linear in 1/depth, the way the model predicts it).
``depth/000001.png`` belongs to ``frames/000001.png``. Every file is written atomically.

Flow fields (``export: [flow]``): for every frame ``N > 1`` the motion field that carried frame ``N - 1``
into frame ``N`` (:func:`pytti_engine.motion.motion_flow`: the 2D affine displacement, the 3D
reprojection, the source-video flow, or zero), as an RGB PNG in the usual HSV flow coding
(:func:`flow_to_rgb`: hue = direction, value = magnitude / the run's largest magnitude, saturation 1);
frame 1 is zero flow (black). ``flow/flow.json`` records the scale (``max_magnitude_px``) so
:func:`rgb_to_flow` can decode the PNGs back to pixels.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence
from io import BytesIO
from pathlib import Path
from typing import Any

import numpy as np
import torch
from kornia.color import hsv_to_rgb, rgb_to_hsv
from PIL import Image
from torch import Tensor

from pytti_engine.checks import check_shape
from pytti_engine.depth import DepthProvider
from pytti_engine.errors import PyttiError
from pytti_engine.io import atomic_write_bytes, load_image
from pytti_engine.motion import CameraSettings, MotionFrame, MotionRuntime, motion_flow


def depth_png_bytes(depth: torch.Tensor, near: float, far: float) -> bytes:
    """A ``(1, 1, H, W)`` depth map in pixels as greyscale PNG bytes (white = near, black = far).

    Args:
        depth: depth in pixels, within ``[near, far]``.
        near: the nearest depth (maps to 255).
        far: the farthest depth (maps to 0).

    Returns:
        PNG bytes of an ``L`` (8-bit greyscale) image of size ``W x H``.
    """
    if depth.ndim != 4 or depth.shape[:2] != (1, 1):
        raise PyttiError(f"expected a (1, 1, H, W) depth map, got {tuple(depth.shape)}")
    inverse = (1.0 / depth.double() - 1.0 / far) / (1.0 / near - 1.0 / far)  # 1 near .. 0 far
    grey = inverse.clamp(0, 1).mul(255).round().to(torch.uint8)[0, 0].cpu().numpy()  # (H, W)
    buffer = BytesIO()
    Image.fromarray(np.ascontiguousarray(grey)).save(buffer, format="PNG")  # uint8 (H, W) -> mode L
    return buffer.getvalue()


def depth_provider_for(scene: Any, device: torch.device) -> DepthProvider:
    """The depth a validated ``Scene`` warps with: its ``depth_model`` (or flat) and camera planes.

    Raises:
        PyttiError: the scene has no ``depth_model``.
        ModelLoadError: the depth model cannot be loaded.
    """
    if scene.depth_model is None:
        raise PyttiError("export: depth needs depth_model (a depth model folder, or 'flat')")
    return CameraSettings.from_scene(scene).depth_provider(device)


def export_depth_maps(
    frames: Sequence[Path], out_dir: Path, provider: DepthProvider, *, device: torch.device
) -> list[Path]:
    """Write one depth PNG per frame file into ``out_dir`` (same file names).

    Args:
        frames: the rendered frame files, in order.
        out_dir: the folder to write (``<run>/depth``), created if needed.
        provider: depth for the scene (its model, near/far planes, field of view).
        device: where to run the depth model.

    Returns:
        The depth files, in frame order.

    Raises:
        PyttiError: a frame cannot be read.
    """
    written = []
    for path in frames:
        with Image.open(path) as probe:
            size = probe.size
        image = load_image(path, size, device=device)  # (1, 3, H, W)
        target = Path(out_dir) / Path(path).name
        atomic_write_bytes(target, depth_png_bytes(provider.depth(image), provider.near, provider.far))
        written.append(target)
    return written


FLOW_SCALE_FILE = "flow.json"


def flow_to_rgb(flow: Tensor, max_magnitude: float) -> Tensor:
    """Colour-code a flow field (HSV: hue = direction, saturation 1, value = magnitude / ``max_magnitude``).

    Convention:
        - ``flow`` in pixels, channel 0 = x (right), channel 1 = y (down on screen);
        - hue is the direction as displayed, counter-clockwise from +x: right = red (0°), up = 90°
          (yellow-green), left = cyan (180°), down = 270° (violet);
        - value is ``|flow| / max_magnitude`` clamped to 1, so zero flow is black; a ``max_magnitude``
          of 0 (a run without motion) gives black everywhere.

    Args:
        flow: :math:`(B, 2, H, W)` pixels.
        max_magnitude: the magnitude shown at full brightness (the run's largest), ``>= 0``.

    Returns:
        :math:`(B, 3, H, W)` RGB in [0, 1], float32.
    """
    check_shape(flow, "B 2 H W")
    dx, dy = flow[:, 0].float(), flow[:, 1].float()
    hue = torch.atan2(-dy, dx).remainder(2 * math.pi)
    magnitude = torch.hypot(dx, dy)
    value = (magnitude / max_magnitude).clamp(0, 1) if max_magnitude > 0 else torch.zeros_like(magnitude)
    return hsv_to_rgb(torch.stack([hue, torch.ones_like(hue), value], dim=1)).clamp(0, 1)


def rgb_to_flow(rgb: Tensor, max_magnitude: float) -> Tensor:
    """Decode :func:`flow_to_rgb` (up to 8-bit rounding when read back from a PNG).

    Args:
        rgb: :math:`(B, 3, H, W)` RGB in [0, 1].
        max_magnitude: the scale the colours were made with (``flow/flow.json``).

    Returns:
        :math:`(B, 2, H, W)` flow in pixels (x right, y down).
    """
    check_shape(rgb, "B 3 H W")
    hsv = rgb_to_hsv(rgb.float())
    hue, magnitude = hsv[:, 0], hsv[:, 2] * max_magnitude
    return torch.stack([magnitude * torch.cos(hue), -magnitude * torch.sin(hue)], dim=1)


def flow_png_bytes(flow: Tensor, max_magnitude: float) -> bytes:
    """A ``(1, 2, H, W)`` flow in pixels as RGB PNG bytes (:func:`flow_to_rgb`).

    Returns:
        PNG bytes of an ``RGB`` image of size ``W x H``.
    """
    if flow.ndim != 4 or flow.shape[0] != 1:
        raise PyttiError(f"expected a (1, 2, H, W) flow, got {tuple(flow.shape)}")
    rgb = flow_to_rgb(flow, max_magnitude).mul(255).round().to(torch.uint8)[0].permute(1, 2, 0)
    buffer = BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb.cpu().numpy())).save(buffer, format="PNG")
    return buffer.getvalue()


def flow_runtime(scene: Any, device: torch.device, *, flow_dir: Path | None = None) -> MotionRuntime:
    """What :func:`pytti_engine.motion.motion_flow` needs for a validated ``Scene`` (no stabilizer).

    ``3d``: the scene's depth (its ``depth_model``, or flat); ``video``: the decoded source video, reading
    the flows precomputed in ``flow_dir`` (the render's own; missing ones are computed the same way).

    Raises:
        ModelLoadError: the depth model or the flow backend cannot be loaded.
        FFmpegError: the source video cannot be decoded.
    """
    camera = CameraSettings.from_scene(scene)
    depth = None
    if scene.animation == "3d":
        depth = camera.depth_provider(device)
    video = None
    if scene.animation == "video":
        from pytti_engine.video_source import VideoSource

        video = VideoSource.from_scene(scene, device, flow_dir=flow_dir)
    return MotionRuntime(camera=camera, depth=depth, video=video)


def export_flow_maps(
    frames: Sequence[Path],
    out_dir: Path,
    plan_frames: Sequence[MotionFrame],
    animation: str,
    runtime: MotionRuntime | None,
    *,
    device: torch.device,
) -> list[Path]:
    """Write one flow PNG per frame file into ``out_dir`` (same names) and the scale to ``flow.json``.

    The flow of frame ``N > 1`` is :func:`~pytti_engine.motion.motion_flow` into ``plan_frames[N - 1]``
    from the frame file ``N - 1``; frame 1 is zero. The colours are normalized by the largest magnitude of
    the whole run, so the fields are computed twice (once for the scale, once to write) rather than held
    in memory.

    Args:
        frames: the rendered frame files, in order.
        out_dir: the folder to write (``<run>/flow``), created if needed.
        plan_frames: the plan's frames, in the same order.
        animation: the scene's animation mode.
        runtime: depth / video resources (:func:`flow_runtime`).
        device: where to compute.

    Returns:
        The flow PNGs, in frame order.

    Raises:
        PyttiError: a frame cannot be read, or the plan is shorter than the frames.
    """
    if len(plan_frames) < len(frames):
        raise PyttiError(f"{len(frames)} frames but the plan has {len(plan_frames)}")

    def fields() -> Iterator[Tensor]:
        previous: Tensor | None = None
        for i, path in enumerate(frames):
            with Image.open(path) as probe:
                size = probe.size
            if previous is None:
                yield torch.zeros(1, 2, size[1], size[0], device=device)
            else:
                yield motion_flow(previous, plan_frames[i], animation, runtime)
            previous = load_image(path, size, device=device)  # (1, 3, H, W)

    largest = max((float(torch.hypot(f[:, 0], f[:, 1]).max()) for f in fields()), default=0.0)
    out = Path(out_dir)
    written = []
    for path, flow in zip(frames, fields(), strict=True):
        target = out / Path(path).name
        atomic_write_bytes(target, flow_png_bytes(flow, largest))
        written.append(target)
    scale = {
        "max_magnitude_px": largest,
        "coding": "HSV: hue = direction (0 deg right, counter-clockwise as displayed), saturation 1, "
        "value = magnitude / max_magnitude_px",
        "field": "d(p) = p - s(p) on frame N's pixels, s(p) = where the warp sampled p in frame N-1",
    }
    atomic_write_bytes(out / FLOW_SCALE_FILE, (json.dumps(scale, indent=2) + "\n").encode())
    return written
