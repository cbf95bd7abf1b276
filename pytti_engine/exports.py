"""Extra per-frame outputs beside the frames (``export: [depth]``), and their videos.

Depth maps: for every rendered frame, the depth the 3D warp of the *next* frame reads from it
(:class:`~pytti_engine.depth.DepthProvider`: the scene's ``depth_model`` mapped to
``[near_plane, far_plane]``, or flat), written as an 8-bit greyscale PNG of normalized inverse
depth: white = ``near_plane``, black = ``far_plane`` (linear in 1/depth, the way the model predicts it).
``depth/000001.png`` belongs to ``frames/000001.png``. Every file is written atomically.

Flow fields (``export: [flow]``) need the video-source optical flow, which this engine does not have
yet; the scene validator refuses them.
"""

from __future__ import annotations

from collections.abc import Sequence
from io import BytesIO
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from pytti_engine.depth import DepthProvider, load_depth_model
from pytti_engine.errors import PyttiError
from pytti_engine.io import atomic_write_bytes, load_image


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
    estimator = None if scene.depth_model == "flat" else load_depth_model(str(scene.depth_model), device)
    return DepthProvider(estimator, scene.near_plane, scene.far_plane, scene.field_of_view)


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
