"""Resume costs: re-rendering a finished run is nearly free, and resuming at frame k costs (N-k)/N.

All through the Prefect flow, in one process (the Prefect API is started once before timing):
  1. a full render of N frames (T_full; one frame = T_full / N);
  2. the same render again into the finished directory (T_done: every frame kept);
  3. the last N-k frames deleted, then the render again (T_k: resume at frame k).

    .venv/bin/python bench/resume.py [--frames 24] [--k 12] [--steps 16]

Prints both ratios; the last line is ``ratio: X`` = T_done / one frame (target <= 3).
"""

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

from common import write_bench_scene


def timed_render(scene: Path, out: Path) -> tuple[float, int, int]:
    from flows.render_scene import RenderParams, render_scene

    start = time.perf_counter()
    summary = render_scene(RenderParams(scene_path=str(scene), out_dir=str(out), device="cpu"))
    return time.perf_counter() - start, summary.rendered, summary.skipped


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--k", type=int, default=12)
    parser.add_argument("--steps", type=int, default=16)
    args = parser.parse_args()

    from prefect import flow

    from pytti_engine.rundir import RunPaths

    logging.getLogger("prefect").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="pytti-bench-") as tmp:
        root = Path(tmp)
        scene = write_bench_scene(root, steps=args.steps, frames=args.frames)
        flow(name="warm-up")(lambda: None)()
        out = root / "run"

        t_full, rendered, _ = timed_render(scene, out)
        one_frame = t_full / rendered
        print(f"full render: {t_full:.2f} s for {rendered} frames ({one_frame:.2f} s/frame)")

        t_done, rendered_again, kept = timed_render(scene, out)
        print(f"re-render of the finished run: {t_done:.2f} s ({rendered_again} rendered, {kept} kept)")

        paths = RunPaths(out)
        for index in range(args.k + 1, args.frames + 1):
            paths.record(index).unlink()
        t_k, rendered_k, kept_k = timed_render(scene, out)
        expected = (args.frames - args.k) / args.frames
        print(
            f"resume at frame {args.k} of {args.frames}: {t_k:.2f} s ({rendered_k} rendered, {kept_k} kept) = "
            f"{t_k / t_full:.3f} of a full render (ideal {expected:.3f})"
        )
        print(f"ratio: {t_done / one_frame:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
