"""Prefect overhead: the same small scene through the bare engine loop and through the flow.

Both sides do the same work per frame (render, write PNG + checkpoint + record) and assemble the same
MP4; the flow side also holds the run lock, runs one Prefect task per frame (state events, a persisted
result), and publishes the progress / latest-frame / contact-sheet / table / plan artifacts and the
manifest. The Prefect API is started once before timing (a warm-up flow), and its start-up time is
printed separately. Two measurements, each alternating engine and flow runs:

1. **Per-frame overhead** with tiny frames (32², 1 step of 1 cutout): renders of ``S`` and ``L``
   frames (``--tiny 6,126``), so that fixed costs (model load, encode, artifacts made once) cancel:
   ``((flow_L - engine_L) - (flow_S - engine_S)) / (L - S)``, from the medians and from the best
   (minimum) of each of the four times over the repeats; and the fixed per-render cost beside it.
   A flow run's end comes in steps of about 1 s (Prefect's log and event workers drain in batches),
   so ``L - S`` should be large (a 1 s step is 8 ms per frame over 120 frames, 25 ms over 40). Also
   measured inside the flow's frame loop (:func:`in_loop_ms`): the wall time between two finished
   frames minus that frame's render and write.
2. **Ratio** at realistic small frames (128², ``--steps`` steps of 16 cutouts, about 1 s per frame on
   a CPU): median flow run ÷ median engine run (→ 1 is the goal).

    .venv/bin/python bench/overhead.py --threads 1   # [--tiny 6,126] [--tiny-repeats 3] [--frames 8]
                                                     # [--steps 16] [--repeats 4] [--only tiny|ratio]

The last two lines are ``per-frame overhead: …`` and ``ratio: X``.
"""

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from common import write_bench_scene


def engine_run(scene_path: Path, out: Path, device: str = "cpu") -> float:
    """The bare engine loop with the same per-frame writes and the same encode."""
    import torch

    from pytti_engine.job import build_context, plan_keys
    from pytti_engine.render import FrameResult, render_frames
    from pytti_engine.rundir import RunPaths, write_frame
    from pytti_engine.scene import build_plan, load_scene
    from pytti_engine.video import EncodeSettings, assemble_video

    start = time.perf_counter()
    scene = load_scene(scene_path)
    plan = build_plan(scene)
    keys = plan_keys(scene, plan)
    ctx = build_context(scene, plan, torch.device(device))
    paths = RunPaths(out)

    def write(result: FrameResult) -> None:
        write_frame(paths, result, result.state.frame, keys[result.state.frame - 1])

    render_frames(plan.frames, ctx, on_frame=write)
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


def marginal_ms(
    times: dict[str, list[float]], small: int, large: int, pick: Callable[[list[float]], float]
) -> float:
    """Flow minus engine per extra frame, in ms: ``((fL - eL) - (fS - eS)) / (L - S)``.

    Args:
        times: wall times in seconds under ``engine-S``, ``flow-S``, ``engine-L``, ``flow-L``.
        pick: how the repeats of one kind become one figure (``statistics.median``, ``min``).
    """
    big = pick(times[f"flow-{large}"]) - pick(times[f"engine-{large}"])
    few = pick(times[f"flow-{small}"]) - pick(times[f"engine-{small}"])
    return 1000 * (big - few) / (large - small)


def in_loop_ms(scene_path: Path, out: Path) -> list[float]:
    """One flow run of ``scene_path``; per frame after the first, in ms: the wall time between two
    finished frames in the flow's frame loop, minus that frame's ``render_frame`` and ``write_frame``
    (what the engine side does too). What is left is the frame's orchestration in the loop: the
    Prefect task run, the done check, the hand-over, the record, queueing the progress update.
    """
    import tasks.publish as publish
    import tasks.render as render

    stamps: list[float] = []
    work: dict[int, float] = {}
    real_render, real_write, real_done = (
        render.render_frame,
        render.write_frame,
        publish.ProgressPublisher.frame_done,
    )

    def timed(fn: Callable[..., Any], index_of: Callable[..., int]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                index = index_of(*args)
                work[index] = work.get(index, 0.0) + time.perf_counter() - start

        return call

    def frame_done(self: Any, record: Any) -> None:
        stamps.append(time.perf_counter())
        real_done(self, record)

    render.render_frame = timed(real_render, lambda state, frame, *a: frame.index)
    render.write_frame = timed(real_write, lambda paths, result, index, *a: index)
    publish.ProgressPublisher.frame_done = frame_done  # type: ignore[method-assign]
    try:
        flow_run(scene_path, out)
    finally:
        render.render_frame, render.write_frame = real_render, real_write
        publish.ProgressPublisher.frame_done = real_done  # type: ignore[method-assign]
    return [
        1000 * (b - a - work[i + 2]) for i, (a, b) in enumerate(zip(stamps[:-1], stamps[1:], strict=True))
    ]


def per_frame_overhead(root: Path, small: int, large: int, repeats: int) -> tuple[float, float]:
    """Run the tiny-frame comparison; print every repeat; return (median, best) ms per frame."""
    scenes = {
        n: write_bench_scene(root, steps=1, frames=n, size=32, cutouts=1, name=f"tiny-{n}")
        for n in (small, large)
    }
    times: dict[str, list[float]] = {f"{side}-{n}": [] for side in ("engine", "flow") for n in (small, large)}
    for k in range(repeats):
        for n in (small, large):
            times[f"engine-{n}"].append(engine_run(scenes[n], root / f"tiny-engine-{n}-{k}"))
            times[f"flow-{n}"].append(flow_run(scenes[n], root / f"tiny-flow-{n}-{k}"))
        print(
            f"tiny repeat {k + 1}: "
            + ", ".join(f"{name} {times[name][-1]:.2f} s" for name in times)
            + f" -> {marginal_ms({n: [t[-1]] for n, t in times.items()}, small, large, min):.1f} ms/frame"
        )
    median, best = (marginal_ms(times, small, large, pick) for pick in (statistics.median, min))
    fixed = (
        statistics.median(times[f"flow-{small}"])
        - statistics.median(times[f"engine-{small}"])
        - small * median / 1000
    )
    engine = (
        1000
        * (statistics.median(times[f"engine-{large}"]) - statistics.median(times[f"engine-{small}"]))
        / (large - small)
    )
    print(f"tiny frames: engine {engine:.1f} ms per frame; flow fixed cost per render {fixed:.2f} s (median)")
    loop = [ms for k in range(repeats) for ms in in_loop_ms(scenes[large], root / f"tiny-loop-{k}")]
    print(
        f"in the flow's frame loop, per frame beyond render + write ({len(loop)} frames): "
        f"median {statistics.median(loop):.1f} ms, mean {statistics.mean(loop):.1f} ms, min {min(loop):.1f} ms"
    )
    return median, best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=4)
    parser.add_argument("--tiny", default="6,126", help="frame counts S,L of the per-frame measurement")
    parser.add_argument("--tiny-repeats", type=int, default=3)
    parser.add_argument("--only", choices=("tiny", "ratio"))
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's own choice)")
    args = parser.parse_args()
    small, large = (int(n) for n in args.tiny.split(","))

    import logging

    import torch
    from prefect import flow

    if args.threads:
        torch.set_num_threads(args.threads)
    logging.getLogger("prefect").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="pytti-bench-") as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        flow(name="warm-up")(lambda: None)()
        print(f"prefect API start-up (not counted): {time.perf_counter() - t0:.2f} s")

        per_frame = None
        if args.only != "ratio":
            median, best = per_frame_overhead(root, small, large, args.tiny_repeats)
            per_frame = (
                f"per-frame overhead (flow - engine, {small} vs {large} tiny frames): "
                f"{median:.1f} ms median, {best:.1f} ms best"
            )
        if args.only == "tiny":
            print(per_frame)
            return 0
        scene = write_bench_scene(root, steps=args.steps, frames=args.frames)
        engine_times, flow_times = [], []
        for k in range(args.repeats):
            engine_times.append(engine_run(scene, root / f"engine-{k}"))
            flow_times.append(flow_run(scene, root / f"flow-{k}"))
            print(f"repeat {k + 1}: engine {engine_times[-1]:.2f} s, flow {flow_times[-1]:.2f} s")
        e, f = statistics.median(engine_times), statistics.median(flow_times)
        print(
            f"frames: {args.frames}, engine per frame: {e / args.frames:.2f} s, flow per frame: {f / args.frames:.2f} s"
        )
        if per_frame is not None:
            print(per_frame)
        print(f"ratio: {f / e:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
