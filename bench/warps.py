"""Motion work for one 512² frame vs one ViT-B-32 CLIP step (CPU, one process).

Motion work is everything the engine does at one frame boundary, summed over the modes so the figure
is an upper bound for any single mode:

- ``3d``: :func:`pytti_engine.motion.apply_motion` on a 512² RGB state with Adam moments: depth of the
  image with the tiny random Depth-Anything test model (:func:`pytti_engine.depth.write_tiny_depth_model`,
  loaded through ``from_pretrained``; a fresh image every round so the depth cache never hits), the
  reprojection grid, and the warp of the image and both moments;
- ``video``: the flow into a frame (DIS MEDIUM backward + forward flow, forward-backward occlusion mask)
  and the flow warp of the image and both moments with occlusion re-init
  (:meth:`pytti_engine.video_source.VideoSource.advance`);
- ``2d``: the affine warp of the image and both moments.

The CLIP step is ViT-B-32 with random weights (``open_clip.create_model("ViT-B-32", pretrained=None)``):
forward + backward of the scene default's 16 cutouts at 224² to the cutouts. Rounds alternate (clip,
motion, clip, motion, ...) so drift of a shared machine hits both; medians are compared.

    .venv/bin/python bench/warps.py [--rounds 5] [--size 512] [--cutouts 16]

The last line is ``ratio: X`` = median motion work / median CLIP step (target <= 0.05).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import torch


@dataclass(frozen=True)
class Frame:
    """One frame of a plan (what motion reads)."""

    index: int = 2
    translate_x: float = 3.0
    translate_y: float = -1.0
    rotate_2d: float = 1.0
    zoom: float = 1.02
    translate_z: float = 10.0
    rotate_3d: tuple[float, ...] = (0.0, 0.5, 0.2)


@dataclass(frozen=True)
class Settings:
    """The scene settings motion reads."""

    animation: str
    infill_mode: str = "wrap"
    sampling_mode: str = "bilinear"


def _state(size: int, gen: torch.Generator) -> Any:
    from pytti_engine.image_params import RGBImage
    from pytti_engine.state import RenderState, make_optimizer

    image = RGBImage(torch.rand(1, 3, size, size, generator=gen))
    state = RenderState(image=image, optimizer=make_optimizer(image, 0.02))
    image.decode().square().sum().backward()
    state.optimizer.step()  # Adam now has moments to move
    return state


def _texture(size: int, dx: float) -> np.ndarray:
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    x = x - dx
    chans = [
        np.sin(x / 5.0 + c) * np.cos(y / 7.0 - c) + 0.5 * np.sin((x + 2 * y) / 11.0 + c) for c in range(3)
    ]
    return ((np.stack(chans, -1) + 1.5) / 3.0 * 255).clip(0, 255).astype(np.uint8)


def clip_step(cutouts: int) -> Callable[[], None]:
    """One ViT-B-32 forward + backward of ``cutouts`` 224² cutouts (random weights, frozen)."""
    import open_clip

    model = open_clip.create_model("ViT-B-32", pretrained=None).eval().requires_grad_(False)
    text = torch.nn.functional.normalize(torch.randn(1, 512), dim=-1)
    batch = torch.rand(cutouts, 3, 224, 224, requires_grad=True)

    def step() -> None:
        batch.grad = None
        embeds = torch.nn.functional.normalize(model.encode_image(batch), dim=-1)
        (1 - embeds @ text.T).mean().backward()

    return step


def motion_work(size: int, depth_dir: Path) -> tuple[Callable[[], dict[str, float]], Callable[[], float]]:
    """The per-frame motion work (timed by part) and a lone DIS 512² pair."""
    from pytti_engine.depth import DepthProvider, load_depth_model
    from pytti_engine.motion import CameraSettings, MotionRuntime, apply_motion
    from pytti_engine.optical_flow import DISFlow
    from pytti_engine.video_source import VideoSource

    device = torch.device("cpu")
    camera = CameraSettings(near_plane=200.0, far_plane=10000.0, depth_model=str(depth_dir))
    depth = DepthProvider(load_depth_model(depth_dir, device), 200.0, 10000.0, 60.0)
    runtime = MotionRuntime(camera=camera, depth=depth)
    frames = np.stack([_texture(size, 0.0), _texture(size, 2.5)])
    video = VideoSource(frames=frames, frame_stride=1, estimator=DISFlow("medium"), device=device)
    gen = torch.Generator().manual_seed(0)
    frame = Frame()

    def work() -> dict[str, float]:
        parts: dict[str, float] = {}
        state = _state(size, gen)  # a new image: depth is never a cache hit
        t0 = time.perf_counter()
        apply_motion(state, frame, Settings("3d"), runtime)  # type: ignore[arg-type]
        t1 = time.perf_counter()
        video.cache.clear()
        video.advance(state, 2, "wrap", "bilinear")
        t2 = time.perf_counter()
        apply_motion(state, frame, Settings("2d"))  # type: ignore[arg-type]
        t3 = time.perf_counter()
        parts.update({"3d": t1 - t0, "video": t2 - t1, "2d": t3 - t2})
        return parts

    dis = DISFlow("medium")

    def dis_pair() -> float:
        t0 = time.perf_counter()
        dis(frames[0], frames[1])
        return time.perf_counter() - t0

    return work, dis_pair


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--cutouts", type=int, default=16)
    args = parser.parse_args()
    from pytti_engine.depth import write_tiny_depth_model

    with tempfile.TemporaryDirectory() as tmp:
        depth_dir = write_tiny_depth_model(Path(tmp) / "tiny-depth")
        step = clip_step(args.cutouts)
        work, dis_pair = motion_work(args.size, depth_dir)
        step(), work(), dis_pair()  # warm-up
        clip_times: list[float] = []
        parts: list[dict[str, float]] = []
        dis_times: list[float] = []
        for _ in range(args.rounds):
            t0 = time.perf_counter()
            step()
            clip_times.append(time.perf_counter() - t0)
            parts.append(work())
            dis_times.extend(dis_pair() for _ in range(5))
    clip = statistics.median(clip_times)
    medians = {k: statistics.median(p[k] for p in parts) for k in parts[0]}
    motion = statistics.median(sum(p.values()) for p in parts)
    print(f"torch threads: {torch.get_num_threads()}, frame {args.size}², {args.rounds} rounds (medians)")
    print(f"CLIP step (ViT-B-32, {args.cutouts} cutouts @224², fwd+bwd): {clip * 1000:.0f} ms")
    for name, value in medians.items():
        print(f"motion {name}: {value * 1000:.1f} ms")
    print(f"motion total per frame: {motion * 1000:.1f} ms")
    print(f"DIS MEDIUM {args.size}² pair: {statistics.median(dis_times) * 1000:.1f} ms (target <= 20 ms)")
    print(f"ratio: {motion / clip:.4f}")


if __name__ == "__main__":
    main()
