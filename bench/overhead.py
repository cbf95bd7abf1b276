"""Prefect overhead: the same small scene through the bare engine loop and through the flow.

Both sides do the same work per frame (render, write PNG + checkpoint) and assemble the same MP4; the
flow side additionally reloads each frame's state from the previous checkpoint, as a crash-safe frame
task must. The Prefect API is started once before timing (a warm-up flow), and its start-up time is
printed separately. Runs alternate (engine, flow, engine, flow, ...); every repeat's two times are printed, and the
ratio compares the medians of the two sides.

    .venv/bin/python bench/overhead.py [--frames 8] [--steps 16] [--repeats 4]

The last line is ``ratio: X`` = median flow wall time / median engine wall time (→ 1 is the goal).
"""

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from common import write_bench_scene


def engine_run(scene_path: Path, out: Path, device: str = "cpu") -> float:
    """The bare engine loop with the same per-frame writes and the same encode."""
    import torch

    from pytti_engine.job import build_context, plan_keys
    from pytti_engine.render import render_frames
    from pytti_engine.rundir import RunPaths, write_frame
    from pytti_engine.scene import build_plan, load_scene
    from pytti_engine.video import EncodeSettings, assemble_video

    start = time.perf_counter()
    scene = load_scene(scene_path)
    plan = build_plan(scene)
    keys = plan_keys(scene, plan)
    ctx = build_context(scene, plan, torch.device(device))
    paths = RunPaths(out)
    render_frames(
        plan.frames, ctx, on_frame=lambda r: write_frame(paths, r, r.state.frame, keys[r.state.frame - 1])
    )
    frames = [paths.frame_png(i) for i in range(1, len(plan.frames) + 1)]
    assemble_video(frames, paths.video("bench"), EncodeSettings(fps=scene.fps))
    return time.perf_counter() - start


def flow_run(scene_path: Path, out: Path, device: str = "cpu") -> float:
    """The Prefect flow, with per-process model caches cleared so it loads what the engine side loads."""
    from flows.render_scene import RenderParams, render_scene
    from tasks import resident

    resident.perceptor.cache_clear()
    resident._context.cache_clear()
    resident._job.cache_clear()
    start = time.perf_counter()
    render_scene(RenderParams(scene_path=str(scene_path), out_dir=str(out), device=device))
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=4)
    args = parser.parse_args()

    import logging

    from prefect import flow

    logging.getLogger("prefect").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="pytti-bench-") as tmp:
        root = Path(tmp)
        scene = write_bench_scene(root, steps=args.steps, frames=args.frames)

        t0 = time.perf_counter()
        flow(name="warm-up")(lambda: None)()
        print(f"prefect API start-up (not counted): {time.perf_counter() - t0:.2f} s")

        engine_times, flow_times = [], []
        for k in range(args.repeats):
            engine_times.append(engine_run(scene, root / f"engine-{k}"))
            flow_times.append(flow_run(scene, root / f"flow-{k}"))
            print(f"repeat {k + 1}: engine {engine_times[-1]:.2f} s, flow {flow_times[-1]:.2f} s")
        e, f = statistics.median(engine_times), statistics.median(flow_times)
        print(
            f"frames: {args.frames}, engine per frame: {e / args.frames:.2f} s, flow per frame: {f / args.frames:.2f} s"
        )
        print(f"ratio: {f / e:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
