"""Video source mode (``animation: video``): the render follows a source video through optical flow.

Output frame ``k`` (1-based) shows source frame ``min((k - 1) * frame_stride, N - 1)`` of the video
decoded at the scene's ``fps`` and size (the last frame repeats if the video is shorter, as in PyTTI).
Frame 1 starts from that source frame (unless ``init_image`` is set). At the boundary into frame
``k > 1`` (:meth:`VideoSource.advance`):

1. the backward flow between the two source frames (DIS by default) warps the previous rendered frame,
   and the optimizer's moments with it;
2. pixels that fail the forward-backward check (newly revealed or unreliable) are re-encoded from the
   new source frame, and only they (:func:`~pytti_engine.image_params.encode_region`: a limited palette
   keeps its palettes, the EMA survives everywhere else); with ``reencode_each_frame`` the whole frame
   is re-encoded that way; when fewer than 3 % of the pixels are reliable (a cut) the image model is
   encoded afresh from the source (a limited palette refits its palettes, the EMA restarts), as PyTTI;
3. the result, with the reliability mask, is the target of the ``flow`` stabilization loss.

The flows depend only on the source video, never on the render, so :func:`compute_frame_flows`
computes any subset of them ahead of the frame chain (in parallel chunks), and
:func:`save_frame_flows` / :class:`VideoSource` ``flow_dir`` reuse them.
"""

from __future__ import annotations

import subprocess
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from pytti_engine.errors import FFmpegError, PyttiError
from pytti_engine.image_params import encode_region
from pytti_engine.motion import MotionOutcome, grid_warp, warp_state
from pytti_engine.optical_flow import FlowEstimator, FlowModelName, backward_flow, load_flow_model
from pytti_engine.state import RenderState
from pytti_engine.types import PaddingMode, SamplingMode
from pytti_engine.warps.flow import flow_grid, occlusion_mask

CUT_THRESHOLD = 0.03  # fewer reliable pixels than this: a cut, re-initialize everything (PyTTI's value)


@dataclass(frozen=True)
class FrameFlow:
    """The flow into one output frame.

    Attributes:
        frame: the output frame (1-based, > 1).
        backward: :math:`(1, 2, H, W)` backward flow from the previous frame's source to this one's.
        valid: :math:`(1, 1, H, W)` 1 where the flow passed the forward-backward check.
    """

    frame: int
    backward: Tensor
    valid: Tensor


def decode_source(path: Path, fps: float, size: tuple[int, int]) -> np.ndarray:
    """Decode a video at ``fps`` frames per second, scaled to ``size`` = (W, H).

    Returns:
        ``uint8`` array ``(N, H, W, 3)``.

    Raises:
        FFmpegError: ffmpeg cannot decode it, or it has no frames.
    """
    from pytti_engine.video import ffmpeg_exe

    width, height = size
    args = [
        ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-i", str(path), "-map", "0:v:0",
        "-vf", f"fps={fps:g},scale={width}:{height}:flags=lanczos", "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:",
    ]  # fmt: skip
    result = subprocess.run(args, capture_output=True, check=False)
    if result.returncode != 0:
        tail = result.stderr.decode("utf-8", errors="replace").strip().splitlines()[-3:]
        raise FFmpegError(f"decoding {path}: {' / '.join(tail) or 'ffmpeg failed'}")
    frame_bytes = width * height * 3
    count = len(result.stdout) // frame_bytes
    if count == 0:
        raise FFmpegError(f"decoding {path}: no video frames")
    return (
        np.frombuffer(result.stdout[: count * frame_bytes], dtype=np.uint8)
        .reshape(count, height, width, 3)
        .copy()
    )


def source_index(frame: int, frame_stride: int, count: int) -> int:
    """The source frame (0-based) shown by output frame ``frame`` (1-based); clamped to the last."""
    if frame < 1:
        raise ValueError(f"frames are numbered from 1, got {frame}")
    return min((frame - 1) * frame_stride, count - 1)


def frame_flow(frames: np.ndarray, frame: int, frame_stride: int, estimator: FlowEstimator) -> FrameFlow:
    """The flow into output ``frame`` (> 1): backward flow between the two source frames and its
    forward-backward reliability mask."""
    if frame < 2:
        raise ValueError(f"frame 1 has no incoming flow (got frame {frame})")
    a = frames[source_index(frame - 1, frame_stride, len(frames))]
    b = frames[source_index(frame, frame_stride, len(frames))]
    backward = backward_flow(estimator, a, b)  # b(p) ≈ a(p + backward(p))
    forward = backward_flow(estimator, b, a)  # a(q) ≈ b(q + forward(q))
    return FrameFlow(frame=frame, backward=backward, valid=occlusion_mask(backward, forward))


def compute_frame_flows(
    frames: np.ndarray, frame_numbers: Iterable[int], frame_stride: int, estimator: FlowEstimator
) -> list[FrameFlow]:
    """Flows into the given output frames; independent of the render and of each other, so the flow
    layer can run chunks of ``frame_numbers`` in parallel ahead of the frame chain."""
    return [frame_flow(frames, k, frame_stride, estimator) for k in frame_numbers if k > 1]


def flow_file(flow_dir: Path, frame: int) -> Path:
    """Where :func:`save_frame_flows` keeps the flow into ``frame``."""
    return flow_dir / f"flow_{frame:06d}.pt"


def save_frame_flows(flows: Sequence[FrameFlow], flow_dir: Path) -> list[Path]:
    """Write each flow as ``flow_dir/flow_000002.pt`` (backward half precision is not used: exact)."""
    from pytti_engine.io import atomic_write

    flow_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for flow in flows:
        path = flow_file(flow_dir, flow.frame)
        data = {"frame": flow.frame, "backward": flow.backward, "valid": flow.valid.to(torch.uint8)}
        atomic_write(path, lambda fh, data=data: torch.save(data, fh))  # type: ignore[misc]
        paths.append(path)
    return paths


def precompute_flows(scene: Any, flow_dir: Path, frames: Iterable[int] | None = None) -> list[Path]:
    """The engine function a flow layer runs ahead of the frame chain: decode the scene's source video
    and write the flow into every output frame in ``frames`` (default: all) to ``flow_dir``.

    Chunks of frames can run in parallel (separate processes); :class:`VideoSource` reads the files
    when given the same ``flow_dir`` and computes any that are missing.
    """
    video = decode_source(Path(scene.video_path), float(scene.fps), (scene.width, scene.height))
    estimator = load_flow_model(scene.flow_model, torch.device("cpu"), weights=scene.flow_weights)
    wanted = range(2, scene.total_frames + 1) if frames is None else frames
    return save_frame_flows(compute_frame_flows(video, wanted, scene.frame_stride, estimator), flow_dir)


def _load_frame_flow(path: Path) -> FrameFlow:
    data = torch.load(path, map_location="cpu", weights_only=True)
    return FrameFlow(frame=int(data["frame"]), backward=data["backward"], valid=data["valid"].float())


def frame_tensor(frame: np.ndarray, device: torch.device) -> Tensor:
    """``(H, W, 3)`` uint8 -> :math:`(1, 3, H, W)` float in [0, 1]."""
    return torch.from_numpy(frame).permute(2, 0, 1).unsqueeze(0).float().div(255).to(device)


@dataclass
class VideoSource:
    """The decoded source video and its flows, for :func:`pytti_engine.motion.apply_motion`.

    Attributes:
        frames: ``(N, H, W, 3)`` uint8 source frames at the scene's fps and size.
        frame_stride: source frames per output frame.
        estimator: the flow estimator (used for flows not found in ``flow_dir``).
        device: where the render runs.
        reencode_each_frame: re-initialize every frame from the source.
        flow_dir: precomputed flows (:func:`precompute_flows`), or ``None``.
        cache: recently used flows by output frame.
    """

    frames: np.ndarray
    frame_stride: int
    estimator: FlowEstimator
    device: torch.device
    reencode_each_frame: bool = False
    flow_dir: Path | None = None
    cache: OrderedDict[int, FrameFlow] = field(default_factory=OrderedDict)

    @classmethod
    def from_scene(
        cls,
        scene: Any,
        device: torch.device,
        *,
        flow_dir: Path | None = None,
        model: FlowModelName | None = None,
    ) -> VideoSource:
        """Decode ``scene.video_path`` and make its flow estimator.

        Raises:
            FFmpegError: the video cannot be decoded.
            ModelLoadError: the flow model cannot be made.
        """
        frames = decode_source(Path(scene.video_path), float(scene.fps), (scene.width, scene.height))
        estimator = load_flow_model(model or scene.flow_model, device, weights=scene.flow_weights)
        return cls(
            frames=frames,
            frame_stride=int(scene.frame_stride),
            estimator=estimator,
            device=device,
            reencode_each_frame=bool(scene.reencode_each_frame),
            flow_dir=flow_dir,
        )

    def source(self, frame: int) -> Tensor:
        """:math:`(1, 3, H, W)` the source frame shown by output ``frame``."""
        return frame_tensor(
            self.frames[source_index(frame, self.frame_stride, len(self.frames))], self.device
        )

    def flow(self, frame: int) -> FrameFlow:
        """The flow into output ``frame``: from ``flow_dir`` when present there, else computed (cached)."""
        if frame in self.cache:
            return self.cache[frame]
        path = None if self.flow_dir is None else flow_file(self.flow_dir, frame)
        if path is not None and path.is_file():
            result = _load_frame_flow(path)
        else:
            result = frame_flow(self.frames, frame, self.frame_stride, self.estimator)
        self.cache[frame] = result
        while len(self.cache) > 2:
            self.cache.popitem(last=False)
        return result

    def advance(
        self, state: RenderState, frame: int, infill: PaddingMode, sampling: SamplingMode
    ) -> MotionOutcome:
        """Move ``state`` into output ``frame`` (see the module docstring); returns the flow target.

        Not under ``no_grad``: a cut re-encodes the image model (``encode``), which may optimize.
        """
        if frame < 2:
            raise PyttiError(f"video motion starts at frame 2, got {frame}")
        source = self.source(frame)
        flow = self.flow(frame)
        grid = flow_grid(flow.backward.to(self.device))
        warp_state(state, grid_warp(grid, infill, sampling), grid_warp(grid, infill, "bilinear"))
        valid = flow.valid.to(self.device)
        if float(valid.mean()) < CUT_THRESHOLD:
            state.image.encode(source)  # a cut: a new picture, palette and all (PyTTI's smart encode)
        elif self.reencode_each_frame:  # the whole frame from the source, the palette kept (as PyTTI)
            encode_region(state.image, source, torch.ones_like(valid))
        elif float(valid.min()) < 1.0:  # only the occluded pixels; palette and EMA elsewhere survive
            encode_region(state.image, source, 1 - valid)
        target = state.image.decode().detach().clone()
        return MotionOutcome(target=target, valid=valid, source=source)
