"""GPU step benchmark: engine step vs bare open_clip forward+backward, ViT-B-32, 512², 40 cutouts, bf16.

Runs only where CUDA is present (otherwise it says so and exits 0). Both sides run under bf16 autocast
(the engine's ``mixed_precision: true``); the bare side is ``encode_image`` forward+backward of a ready,
normalized batch of the engine's cutouts. Reports steps per second, peak GPU memory of each side, and

    .venv/bin/python bench/gpu.py [--image-model unlimited_palette|limited_palette] [--steps 20]

the last line ``ratio: X`` = median engine step / median bare step.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from step import bare_step_fn, engine_step_fn, make_context, timed, vit_b_32


def main() -> None:
    """Run the benchmark, or skip without CUDA."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--image-model", default="unlimited_palette", choices=["unlimited_palette", "limited_palette"]
    )
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--cutouts", type=int, default=40)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA device: skipped")
        print("ratio: skipped")
        return
    device = torch.device("cuda")
    sync = torch.cuda.synchronize
    perceptor = vit_b_32(device)
    ctx = make_context(perceptor, args.image_model, size=args.size, cutouts=args.cutouts, device=device)
    engine, state = engine_step_fn(ctx)
    bare = bare_step_fn(perceptor, ctx, state)

    def bare_bf16() -> None:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            bare()

    results = {}
    for name, fn in (("bare", bare_bf16), ("engine", engine), ("bare2", bare_bf16), ("engine2", engine)):
        for _ in range(3):  # warm-up
            fn()
        torch.cuda.reset_peak_memory_stats()
        times = [timed(fn, sync) for _ in range(args.steps // 2)]
        results[name] = (times, torch.cuda.max_memory_allocated())
    bare_t = statistics.median(results["bare"][0] + results["bare2"][0])
    engine_t = statistics.median(results["engine"][0] + results["engine2"][0])
    print(
        f"{torch.cuda.get_device_name()}: ViT-B-32 bf16, {args.size}², {args.cutouts} cutouts, {args.image_model}"
    )
    print(
        f"bare open_clip fwd+bwd: {bare_t * 1000:.1f} ms ({1 / bare_t:.2f} steps/s), "
        f"peak {results['bare'][1] / 2**30:.2f} GiB"
    )
    print(
        f"engine step: {engine_t * 1000:.1f} ms ({1 / engine_t:.2f} steps/s), "
        f"peak {results['engine'][1] / 2**30:.2f} GiB"
    )
    print(f"ratio: {engine_t / bare_t:.3f}")


if __name__ == "__main__":
    main()
