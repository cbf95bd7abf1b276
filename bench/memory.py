"""Memory of the engine loop: RSS growth over many steps and frames, and peak RSS vs a bare open_clip loop.

The engine renders ``--frames`` frames of ``--steps`` steps each (ViT-B-32, random weights, 256²,
``--cutouts`` cutouts, CPU) through :func:`pytti_engine.render.render_frame`, so frame boundaries
(output decode, optimizer carry-over) are included. RSS is read after ``--early`` steps and at the
end; the growth between them must stay under 20 MB. The peak RSS of the whole engine process
(``VmHWM``) is compared with that of a fresh process that loads the same model and runs the bare
open_clip forward+backward loop on a ready cutout batch (``--bare``), which is the floor.

    .venv/bin/python bench/memory.py [--image-model unlimited_palette] [--frames 20] [--steps 10]
        [--model ViT-B-32|stand-in] [--cutouts 16]

``--model stand-in`` (the tiny random perceptor) makes a long growth run affordable on a busy CPU; the
peak comparison is meaningful with ViT-B-32.

The last line is ``ratio: X`` = (engine peak - bare peak) / 0.3 GiB (the target is <= 1), after the
growth and peak lines.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from step import Frame, bare_step_fn, engine_step_fn, make_context, vit_b_32

GIB = 1024**3


def status_kib(field: str) -> int:
    """A ``/proc/self/status`` field in KiB (``VmRSS``, ``VmHWM``)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def load(model: str) -> Any:
    """The perceptor: ViT-B-32 with random weights, or the tiny stand-in (fast, for long growth runs)."""
    if model == "ViT-B-32":
        return vit_b_32(torch.device("cpu"))
    from pytti_engine.perceptors import load_perceptor, write_stand_in

    folder = write_stand_in(Path(tempfile.mkdtemp(prefix="pytti-bench-")) / "clip")
    return load_perceptor("local-dir:" + str(folder))


def bare(args: argparse.Namespace) -> None:
    """The floor: load the model, run bare forward+backward steps, print the peak RSS in bytes."""
    perceptor = load(args.model)
    ctx = make_context(
        perceptor, "unlimited_palette", size=args.size, cutouts=args.cutouts, device=torch.device("cpu")
    )
    _, state = engine_step_fn(ctx)
    step = bare_step_fn(perceptor, ctx, state)
    for _ in range(args.bare_steps):
        step()
    print(status_kib("VmHWM") * 1024)


def engine(args: argparse.Namespace) -> None:
    """The engine loop; prints growth and peaks, then the ratio."""
    from pytti_engine.render import initial_state, render_frame

    cpu = torch.device("cpu")
    perceptor = load(args.model)
    ctx = make_context(perceptor, args.image_model, size=args.size, cutouts=args.cutouts, device=cpu)
    ctx = replace(ctx, settings=replace(ctx.settings, steps_per_frame=args.steps))
    state = initial_state(ctx)
    early_rss = None
    for index in range(1, args.frames + 1):
        render_frame(state, Frame(index=index), ctx)
        if state.step >= args.early and early_rss is None:
            early_rss = status_kib("VmRSS") * 1024
            print(f"RSS after {state.step} steps: {early_rss / 2**20:.1f} MiB", flush=True)
    end_rss = status_kib("VmRSS") * 1024
    peak = status_kib("VmHWM") * 1024
    assert early_rss is not None
    growth = (end_rss - early_rss) / 2**20
    print(
        f"RSS after {state.step} steps: {end_rss / 2**20:.1f} MiB; growth {growth:+.1f} MiB (target <= 20 MB)"
    )
    command = [sys.executable, __file__, "--bare", "--model", args.model, "--threads", str(args.threads)]
    command += ["--size", str(args.size), "--cutouts", str(args.cutouts)]
    bare_peak = int(subprocess.run(command, check=True, capture_output=True, text=True).stdout.split()[-1])
    print(
        f"peak RSS: engine {peak / GIB:.3f} GiB, bare open_clip loop {bare_peak / GIB:.3f} GiB, "
        f"difference {(peak - bare_peak) / GIB:+.3f} GiB (target <= +0.3 GiB)"
    )
    print(f"ratio: {(peak - bare_peak) / (0.3 * GIB):.3f}")


def main() -> None:
    """Parse arguments and run one side."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--image-model", default="unlimited_palette", choices=["unlimited_palette", "limited_palette"]
    )
    parser.add_argument("--model", default="ViT-B-32", choices=["ViT-B-32", "stand-in"])
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--steps", type=int, default=10, help="steps per frame")
    parser.add_argument("--early", type=int, default=20, help="steps after which the first RSS is read")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--cutouts", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--bare", action="store_true", help="(internal) run the bare loop and print its peak")
    parser.add_argument("--bare-steps", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.bare:
        bare(args)
    else:
        engine(args)


if __name__ == "__main__":
    main()
