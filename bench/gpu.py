"""GPU benchmark: the engine step against a bare open_clip forward+backward, and the flow's cost per frame.

1. Step: ``ViT-B-32`` (open_clip, random weights: ``pretrained=None``, seed 0; timing does not depend on
   the weights), a 512² image, 40 cutouts, bf16 autocast. The engine side is the real loop,
   :func:`pytti_engine.render.optimize_frame` over ``--steps`` steps (decode, cutouts drawn on the GPU,
   perceptor forward+backward, prompt loss, TV, Adam, projection, the loss read every 10 steps); the
   bare side is ``encode_image`` forward+backward of a ready, normalized batch of the same cutouts,
   ``--steps`` times, under the same autocast. Each side is timed over its whole run with one device
   sync at each end; phases alternate for ``--rounds`` rounds (the first is warm-up) and the medians
   are compared. Also timed: the engine with ``mixed_precision: false`` (fp32: what bf16 autocast
   buys) and the bare step with channels-last input (whether channels-last helps the perceptor).
2. Per frame: the same scene (``--frames`` frames of ``--steps`` steps, 512², 40 cutouts, ViT-B-32 saved
   as a local-dir model) through the bare engine loop and through the ``render-scene`` flow
   (``bench/overhead.py``'s two sides, on the GPU), alternating ``--repeats`` times:
   ``(flow - engine) / frames`` is the flow's cost per frame at GPU frame times.

    .venv/bin/python bench/gpu.py                         # CUDA: the figures of docs/benchmarks.md
    .venv/bin/python bench/gpu.py --device cpu --small    # the same code end to end on a CPU, tiny sizes

``--small`` uses the tiny stand-in perceptor, 64², 8 cutouts and a few steps (a check that the script
runs, not a figure). Without CUDA and without ``--device cpu`` it says so and exits with status 2. The
last lines are ``step ratio: X`` (engine steps/s ÷ bare steps/s; the target is ≥ 0.9),
``flow per frame: X ms`` and ``ratio: X`` (flow ÷ engine wall time per render; the target is ≤ 1.05).
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import write_bench_scene
from overhead import engine_run, flow_run
from step import Frame, bare_step_fn, make_context, vit_b_32

NO_CUDA = (
    "bench/gpu.py: no CUDA device on this machine; run it where there is one (bench/gpu_session.sh), "
    "or check it end to end on the CPU with --device cpu --small"
)


def _sync(device: torch.device) -> Callable[[], None]:
    return torch.cuda.synchronize if device.type == "cuda" else (lambda: None)


def _autocast(device: torch.device) -> Any:
    import contextlib

    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()


def write_vit_b_32(directory: Path) -> Path:
    """ViT-B-32 with random weights (seed 0, float16) in the local-dir layout, for a scene to load."""
    import open_clip

    from pytti_engine.perceptors import save_local_dir

    torch.manual_seed(0)
    net = open_clip.create_model("ViT-B-32", pretrained=None)
    cfg = net.visual.preprocess_cfg
    state = {k: v.half() if v.is_floating_point() else v for k, v in net.state_dict().items()}
    config = open_clip.get_model_config("ViT-B-32")
    assert config is not None
    return save_local_dir(directory, config, state, mean=cfg["mean"], std=cfg["std"], pytti={"bench": True})


def step_phases(
    perceptor: Any, args: argparse.Namespace, device: torch.device
) -> dict[str, Callable[[], None]]:
    """The timed phases of part 1, each running ``args.steps`` steps."""
    from pytti_engine.render import initial_state, optimize_frame

    ctx = make_context(perceptor, "unlimited_palette", size=args.size, cutouts=args.cutouts, device=device)
    ctx = replace(ctx, settings=replace(ctx.settings, steps_per_frame=args.steps))
    fp32 = replace(ctx, settings=replace(ctx.settings, mixed_precision=False))
    frame = Frame(index=2)  # not frame 1: no pre-animation, no init losses
    states = {"engine": initial_state(ctx), "engine_fp32": initial_state(fp32)}
    bare = bare_step_fn(perceptor, ctx, states["engine"])
    bare_cl = bare_step_fn(perceptor, ctx, states["engine"], channels_last=True)

    def repeat(fn: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            with _autocast(device):
                for _ in range(args.steps):
                    fn()

        return run

    def engine() -> None:
        optimize_frame(states["engine"], frame, ctx)

    def engine_fp32() -> None:
        optimize_frame(states["engine_fp32"], frame, fp32)

    return {
        "bare": repeat(bare),
        "engine": engine,
        "bare_channels_last": repeat(bare_cl),
        "engine_fp32": engine_fp32,
    }


def measure_steps(perceptor: Any, args: argparse.Namespace, device: torch.device) -> float:
    """Part 1; returns the step ratio (engine steps/s ÷ bare steps/s)."""
    phases = step_phases(perceptor, args, device)
    sync = _sync(device)
    times: dict[str, list[float]] = {name: [] for name in phases}
    peaks: dict[str, int] = {}
    for r in range(args.rounds):
        for name, run in phases.items():
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
            sync()
            start = time.perf_counter()
            run()
            sync()
            if r > 0:
                times[name].append((time.perf_counter() - start) / args.steps)
            if device.type == "cuda":
                peaks[name] = torch.cuda.max_memory_allocated()
        print(
            f"round {r + 1}/{args.rounds}: "
            + ", ".join(f"{n} {t[-1] * 1000:.2f} ms" for n, t in times.items() if t)
        )
    med = {name: statistics.median(t) for name, t in times.items()}
    for name, t in med.items():
        peak = f", peak {peaks[name] / 2**30:.2f} GiB" if name in peaks else ""
        print(f"{name}: {t * 1000:.2f} ms/step ({1 / t:.1f} steps/s){peak}")
    print(f"bf16 autocast: engine fp32 / engine bf16 step time = {med['engine_fp32'] / med['engine']:.3f}")
    print(
        f"channels-last input: bare / bare channels-last step time = {med['bare'] / med['bare_channels_last']:.3f}"
    )
    ratio = med["bare"] / med["engine"]
    print(f"step ratio: {ratio:.3f} (engine steps/s ÷ bare fwd+bwd steps/s; target ≥ 0.9)")
    return ratio


def measure_frames(model: Path, args: argparse.Namespace, device: torch.device) -> float:
    """Part 2; returns flow ÷ engine wall time."""
    from prefect import flow

    logging.getLogger("prefect").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="pytti-bench-gpu-") as tmp:
        root = Path(tmp)
        scene = write_bench_scene(
            root, steps=args.steps, frames=args.frames, size=args.size, cutouts=args.cutouts, model=model
        )
        t0 = time.perf_counter()
        flow(name="warm-up")(lambda: None)()
        print(f"prefect API start-up (not counted): {time.perf_counter() - t0:.2f} s")
        engine_times, flow_times = [], []
        for k in range(args.repeats):
            engine_times.append(engine_run(scene, root / f"engine-{k}", str(device)))
            flow_times.append(flow_run(scene, root / f"flow-{k}", str(device)))
            print(f"repeat {k + 1}: engine {engine_times[-1]:.2f} s, flow {flow_times[-1]:.2f} s")
    e, f = statistics.median(engine_times), statistics.median(flow_times)
    print(f"frames: {args.frames} of {args.steps} steps, engine per frame: {e / args.frames * 1000:.0f} ms")
    print(f"flow per frame: {(f - e) / args.frames * 1000:.0f} ms beyond the engine")
    print(f"ratio: {f / e:.3f} (flow ÷ engine; target ≤ 1.05)")
    return f / e


def main() -> int:
    """Run both parts (or say why not)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda | cuda:N | cpu")
    parser.add_argument(
        "--small", action="store_true", help="tiny stand-in perceptor and sizes (a run check)"
    )
    parser.add_argument("--steps", type=int, default=None, help="steps per frame / per timed phase (50)")
    parser.add_argument(
        "--rounds", type=int, default=6, help="alternating step rounds (the first is warm-up)"
    )
    parser.add_argument("--frames", type=int, default=None, help="frames of the flow part (6)")
    parser.add_argument("--repeats", type=int, default=2, help="engine/flow repeats of the flow part")
    parser.add_argument("--skip-flow", action="store_true", help="part 1 only")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print(NO_CUDA, file=sys.stderr)
        return 2
    small = args.small
    args.size, args.cutouts = (64, 8) if small else (512, 40)
    args.steps = args.steps or (4 if small else 50)
    args.frames = args.frames or (3 if small else 6)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(
        f"{name}, torch {torch.__version__}: {'stand-in' if small else 'ViT-B-32'}, {args.size}², {args.cutouts} cutouts"
    )
    with tempfile.TemporaryDirectory(prefix="pytti-bench-model-") as tmp:
        if small:
            from pytti_engine.perceptors import load_perceptor, write_stand_in

            model = write_stand_in(Path(tmp) / "clip")
            perceptor = load_perceptor("local-dir:" + str(model), device=device)
        else:
            model = write_vit_b_32(Path(tmp) / "vit-b-32")
            perceptor = vit_b_32(device)
        measure_steps(perceptor, args, device)
        del perceptor
        if not args.skip_flow:
            measure_frames(model, args, device)
    return 0


if __name__ == "__main__":
    sys.exit(main())
