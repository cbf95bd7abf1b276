"""What a frame-boundary warp costs a VQGAN image: ``vqgan_warp: pixels`` (PyTTI's decode, warp, re-encode)
vs ``latent`` (warp the latent grid, its EMA and Adam's moments), side by side in one process (CPU).

The model is taming's imagenet architecture (ddconfig A, 16384 codes) with random weights; the warp is
one frame of a 2D pan + zoom, applied through :func:`pytti_engine.motion.apply_motion` (the path a render
takes, Adam moments included). Phases alternate so drift of a shared machine hits both; the minimum of
each is compared.

    .venv/bin/python bench/vqgan_warp.py [--size 256] [--rounds 6] [--threads 1]

The last line is ``ratio: X`` = latent warp / pixel warp (below 1: the latent warp is cheaper).

Quality is not measured here: it needs trained weights (with random weights the encoder is not the
decoder's inverse, so the pixel path's re-encode error would mean nothing).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from step import imagenet_vqgan


@dataclass(frozen=True)
class Frame:
    """One frame's motion values (what ``apply_motion`` reads)."""

    index: int = 2
    translate_x: float = 3.0
    translate_y: float = 0.0
    rotate_2d: float = 0.0
    zoom: float = 1.02


@dataclass(frozen=True)
class Settings:
    """The motion settings ``apply_motion`` reads."""

    animation: str = "2d"
    infill_mode: str = "wrap"
    sampling_mode: str = "bilinear"


def make_state(vqgan: object, size: int, warp: Literal["pixels", "latent"]) -> object:
    """A VQGAN image with an EMA and a warm Adam (one step taken), as mid-render."""
    from pytti_engine.image_params import ImageConfig, make_image
    from pytti_engine.state import RenderState, make_optimizer

    config = ImageConfig(
        image_model="vqgan", width=size, height=size, ema_decay=0.99, vqgan_model="imagenet", vqgan_warp=warp
    )
    image = make_image(config, torch.Generator().manual_seed(0), torch.device("cpu"), vqgan=vqgan)  # type: ignore[arg-type]
    state = RenderState(image=image, optimizer=make_optimizer(image, 0.1))
    image.decode().mean().backward()
    state.optimizer.step()
    image.update_average_()
    return state


def main() -> None:
    """Time both warp modes and print the ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=6, help="alternating rounds (the first is warm-up)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from pytti_engine.motion import apply_motion

    vqgan = imagenet_vqgan(torch.device("cpu"))
    states = {mode: make_state(vqgan, args.size, mode) for mode in ("pixels", "latent")}
    times: dict[str, list[float]] = {mode: [] for mode in states}
    for r in range(args.rounds):
        for mode, state in states.items():
            start = time.perf_counter()
            apply_motion(state, Frame(), Settings())  # type: ignore[arg-type]
            if r > 0:
                times[mode].append(time.perf_counter() - start)
        if r > 0:
            print(f"round {r}: " + ", ".join(f"{m} {t[-1]:.3f}s" for m, t in times.items()), flush=True)
    pixels, latent = min(times["pixels"]), min(times["latent"])
    print(f"pixel warp (decode, warp, encode) at {args.size}x{args.size}: {pixels:.3f} s")
    print(f"latent warp (latent grid + EMA + Adam moments): {latent:.4f} s")
    print(f"ratio: {latent / pixels:.4f}")


if __name__ == "__main__":
    main()
