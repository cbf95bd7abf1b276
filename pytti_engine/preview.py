"""``pytti preview``: the camera path alone, in seconds, with no perceptor loaded.

The preview runs the renderer's own per-frame function (:func:`pytti_engine.render.render_frame`) with
zero optimizer steps and no perceptors, so every frame is the previous one moved by
:func:`pytti_engine.motion.apply_motion`, exactly as a render would move it. A scene with
``steps_per_frame: 0`` therefore renders the same frames as its preview (a test checks it). Without an
``init_image`` the preview starts from a built-in test pattern (:func:`pattern_image`) so that motion is
visible (a render without an init image starts from noise instead), except in video mode, where both
start from the first source frame.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from pytti_engine.io import atomic_write_bytes, png_bytes
from pytti_engine.motion import MotionRuntime
from pytti_engine.prompts import PromptTargets
from pytti_engine.render import FrameResult, RenderContext, RenderSettings, render_frames

PATTERN_NAME = "test-pattern.png"


@dataclass(frozen=True)
class PreviewResult:
    """What :func:`write_preview` produced.

    Attributes:
        frames: the PNG files, in order.
        video: the MP4, or ``None`` when not requested.
        seconds: wall time.
    """

    frames: tuple[Path, ...]
    video: Path | None
    seconds: float


def pattern_image(height: int, width: int) -> Tensor:
    """A test card that shows translation, rotation, zoom and parallax: a grid, rings, colour ramps.

    Returns:
        :math:`(1, 3, H, W)` in [0, 1], deterministic.
    """
    ys = torch.linspace(0, 1, height).view(height, 1).expand(height, width)
    xs = torch.linspace(0, 1, width).view(1, width).expand(height, width)
    cell = max(4, min(height, width) // 8)
    iy = torch.arange(height).view(height, 1).expand(height, width)
    ix = torch.arange(width).view(1, width).expand(height, width)
    lines = ((iy % cell) < max(1, cell // 8)) | ((ix % cell) < max(1, cell // 8))
    radius = torch.hypot(xs - 0.5, (ys - 0.5) * height / width)
    rings = torch.cos(radius * 40.0) > 0.6
    r, g, b = xs.clone(), ys.clone(), 1.0 - xs
    checker = ((ix // cell + iy // cell) % 2 == 0).float() * 0.25
    image = torch.stack([r * 0.75 + checker, g * 0.75 + checker, b * 0.75 + checker])
    image = torch.where(rings, torch.ones_like(image) * torch.tensor([1.0, 0.9, 0.2]).view(3, 1, 1), image)
    image = torch.where(lines, torch.zeros_like(image), image)
    return image.clamp(0, 1).unsqueeze(0)


def preview_context(
    scene: Any, device: torch.device, *, init_image: Path | None = None, runtime: MotionRuntime | None = None
) -> RenderContext:
    """A render context with zero optimizer steps and no perceptors (nothing is loaded but motion's own
    depth model / video).

    Args:
        scene: the validated scene.
        device: where to run.
        init_image: the start image (default: the scene's).
        runtime: motion resources (default: built from ``scene``).
    """
    settings = RenderSettings.from_scene(scene)
    settings = dataclasses.replace(settings, steps_per_frame=0, init_image=init_image or settings.init_image)
    return RenderContext(
        settings=settings,
        perceptors=(),
        perceptor_weights=(),
        targets=PromptTargets(texts=(), embeds=()),
        device=device,
        motion=runtime if runtime is not None else MotionRuntime.from_scene(scene, device),
    )


def preview_frames(
    scene: Any,
    plan: Any,
    device: torch.device,
    on_frame: Callable[[FrameResult], None],
    *,
    init_image: Path | None = None,
) -> None:
    """Run the motion of every frame of ``plan`` (no optimization), calling ``on_frame`` per frame."""
    render_frames(plan.frames, preview_context(scene, device, init_image=init_image), on_frame=on_frame)


def write_preview(
    scene: Any,
    plan: Any,
    out_dir: Path,
    *,
    device: torch.device | None = None,
    video: bool = True,
    on_progress: Callable[[int, int], None] | None = None,
) -> PreviewResult:
    """Write the preview of ``scene`` as ``out_dir/frames/000001.png ...`` and ``out_dir/preview.mp4``.

    Args:
        scene: the validated scene.
        plan: its plan.
        out_dir: the output folder (created).
        device: where to run (CPU by default: warps are cheap).
        video: also assemble the MP4.
        on_progress: called with ``(frame, total)`` after each frame.

    Returns:
        The written files and the wall time.
    """
    import time

    from pytti_engine.fetch import fetch_inputs, localize_scene
    from pytti_engine.video import EncodeSettings, assemble_video

    start = time.perf_counter()
    device = device or torch.device("cpu")
    scene = localize_scene(scene, fetch_inputs(scene, out_dir))  # URL inputs: fetched into out_dir
    frames_dir = out_dir / "frames"
    frames_dir.mkdir(parents=True, exist_ok=True)
    init = scene.init_image
    if init is None and scene.animation != "video":  # video mode starts from its first source frame
        init = out_dir / PATTERN_NAME
        atomic_write_bytes(init, png_bytes(pattern_image(scene.height, scene.width)))
    written: list[Path] = []
    total = len(plan.frames)

    def save(result: FrameResult) -> None:
        path = frames_dir / f"{len(written) + 1:06d}.png"
        atomic_write_bytes(path, png_bytes(result.image))
        written.append(path)
        if on_progress is not None:
            on_progress(len(written), total)

    preview_frames(scene, plan, device, save, init_image=init)
    mp4 = None
    if video:
        encode = EncodeSettings(fps=float(scene.fps), crf=scene.output.crf, preset="veryfast")
        mp4 = assemble_video(written, out_dir / "preview.mp4", encode)
    return PreviewResult(frames=tuple(written), video=mp4, seconds=time.perf_counter() - start)
