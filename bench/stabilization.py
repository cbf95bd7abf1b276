"""What PyTTI's stabilization definitions and the exact 3D reprojection add, against one CLIP step (CPU).

- ``flow`` outside video mode: one step of PyTTI's TargetFlowLoss (the differentiable pyramidal
  Lucas-Kanade flow from the previous frame to the image, forward + backward to the image) at
  ``--size``²; it runs every optimizer step when its weight is not 0;
- ``semantic``: the per-step pairing of ``--cutouts`` cutouts with the target's (Hungarian matching of
  the centres + the paired distances; the target's cutouts are embedded once per frame, not counted);
- the 3D grid of ``camera_model: pinhole`` from the previous depth (4 fixed-point steps) against the
  one-shot approximation it replaced (0 steps), once per frame.

The CLIP step is ViT-B-32 with random weights, forward + backward of ``--cutouts`` cutouts at 224²
(``warps.clip_step``). Rounds alternate so drift of a shared machine hits every part; medians.

    .venv/bin/python bench/stabilization.py [--rounds 5] [--size 512] [--cutouts 16]

The last line is ``ratio: X`` = median flow-loss step / median CLIP step.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
from warps import clip_step


def _texture(size: int, shift: float) -> torch.Tensor:
    y, x = torch.meshgrid(
        torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32), indexing="ij"
    )
    x = x - shift
    channels = [
        torch.sin(x / 5 + c) * torch.cos(y / 7 - c) + 0.5 * torch.sin((x + 2 * y) / 11 + c) for c in range(3)
    ]
    return torch.stack(channels)[None] / 3 + 0.5


def flow_step(size: int) -> Callable[[], None]:
    """One TargetFlowLoss forward + backward at ``size``²."""
    from pytti_engine.optical_flow import LucasKanadeFlow
    from pytti_engine.stabilization import flow_loss

    previous = _texture(size, 0.0)
    image = _texture(size, 2.0).requires_grad_(True)
    motion = torch.zeros(1, 2, size, size)
    motion[:, 0] = -2.0
    estimator = LucasKanadeFlow()

    def step() -> None:
        image.grad = None
        flow_loss(estimator, image, previous, motion).backward()

    return step


def semantic_step(cutouts: int) -> Callable[[], None]:
    """The per-step part of the semantic stabilization: pair and compare ``cutouts`` cutouts."""
    from pytti_engine.cutouts import Cutouts
    from pytti_engine.prompts import ImagePromptTarget, image_prompt_loss

    gen = torch.Generator().manual_seed(0)
    target = ImagePromptTarget(
        embeds=(torch.randn(cutouts, 512, generator=gen),), offsets=(torch.rand(cutouts, 2, generator=gen),)
    )
    cuts = Cutouts(
        images=torch.empty(0), offsets=torch.rand(cutouts, 2, generator=gen), sizes=torch.rand(cutouts, 2)
    )
    embeds = torch.randn(cutouts, 512, generator=gen, requires_grad=True)

    def step() -> None:
        embeds.grad = None
        image_prompt_loss(target, 0, embeds, cuts, 1.0, None).backward()

    return step


def grids(size: int) -> tuple[Callable[[], None], Callable[[], None]]:
    """The 3D grid from the previous depth: 4 fixed-point steps, and the one-shot approximation."""
    from pytti_engine.warps.warp3d import Motion3D, reprojection_grid_from_previous

    depth = 1.0 / (
        torch.linspace(1 / 5000, 1 / 300, size).view(1, 1, 1, size).expand(1, 1, size, size).clone()
    )
    motion = Motion3D(translate_x=3.0, translate_z=10.0, rotate=(0.0, 0.5, 0.2))

    def exact() -> None:
        reprojection_grid_from_previous(depth, motion, 60.0, lock_camera=True)

    def one_shot() -> None:
        reprojection_grid_from_previous(depth, motion, 60.0, lock_camera=True, iterations=0)

    return exact, one_shot


def _time(fn: Callable[[], None]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--cutouts", type=int, default=16)
    args = parser.parse_args()
    parts = {
        "clip": clip_step(args.cutouts),
        "flow": flow_step(args.size),
        "semantic": semantic_step(args.cutouts),
    }
    exact, one_shot = grids(args.size)
    parts.update({"grid_exact": exact, "grid_one_shot": one_shot})
    for fn in parts.values():
        fn()  # warm-up
    times: dict[str, list[float]] = {name: [] for name in parts}
    for _ in range(args.rounds):
        for name, fn in parts.items():
            times[name].append(_time(fn))
    m = {name: statistics.median(values) for name, values in times.items()}
    print(f"torch threads: {torch.get_num_threads()}, image {args.size}², {args.rounds} rounds (medians)")
    print(f"CLIP step (ViT-B-32, {args.cutouts} cutouts @224², fwd+bwd): {m['clip'] * 1000:.0f} ms")
    print(f"flow loss step (Lucas-Kanade, fwd+bwd): {m['flow'] * 1000:.1f} ms")
    print(f"semantic pairing step ({args.cutouts} cutouts): {m['semantic'] * 1000:.2f} ms")
    print(
        f"3D grid per frame: exact {m['grid_exact'] * 1000:.1f} ms, one-shot {m['grid_one_shot'] * 1000:.1f} ms "
        f"(exact / one-shot {m['grid_exact'] / m['grid_one_shot']:.2f}; exact / CLIP step "
        f"{m['grid_exact'] / m['clip']:.4f})"
    )
    print(f"semantic / CLIP step: {m['semantic'] / m['clip']:.4f}")
    print(f"ratio: {m['flow'] / m['clip']:.3f}")


if __name__ == "__main__":
    main()
