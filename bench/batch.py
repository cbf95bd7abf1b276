"""Batch throughput: four small scenes through a process work pool with two workers vs one worker.

Starts its own ``prefect server`` on 127.0.0.1 (own PREFECT_HOME, free port), creates the
``pytti-gpu`` and ``pytti-batch`` pools, deploys ``deploy/prefect.yaml``, then runs the batch flow
in this process twice (it fans the scenes out with ``run_deployment``): once with one render worker,
once with two, each worker's runs limited to one torch thread (``OMP_NUM_THREADS=1``) and one run at
a time (``--limit 1``). Everything it started is stopped by PID at the end.

    .venv/bin/python bench/batch.py [--frames 10] [--steps 40] [--size 64]

The last line is ``ratio: X`` = (one-worker wall time) / (two-worker wall time); the target is ≥ 1.7.
"""

import argparse
import os
import sys
import tempfile
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from flows.local_stack import LocalStack  # noqa: E402

# One torch thread per worker's runs; workers poll every second (the default is 10 s, which would add
# up to 10 s of pick-up latency to every scene in both set-ups).
WORKER_ENV = {
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "PREFECT_WORKER_QUERY_SECONDS": "1",
}


def write_scenes(folder: Path, stand_in: Path, *, count: int, frames: int, steps: int, size: int) -> None:
    """``count`` small scenes that differ in seed and prompt."""
    folder.mkdir(parents=True)
    for i in range(count):
        (folder / f"scene{i + 1}.yaml").write_text(
            textwrap.dedent(
                f"""\
                width: {size}
                height: {size}
                fps: 12
                seed: {i + 1}
                steps_per_frame: {steps}
                perceptors:
                  - {{model: "local-dir:{stand_in}"}}
                cutouts: 8
                animation: 2d
                zoom: 1.02
                scenes:
                  - prompts: "a lighthouse number {i + 1}:1 | storm:0.5"
                    frames: {frames}
                """
            )
        )


def wait_for_workers(stack: LocalStack, pool: str, count: int, timeout: float = 60) -> None:
    """Until ``count`` workers of ``pool`` are online."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        workers = stack.api("POST", f"/work_pools/{pool}/workers/filter", json={}).json()
        if sum(w.get("status") == "ONLINE" for w in workers) >= count:
            return
        time.sleep(0.5)
    raise TimeoutError(f"{count} worker(s) of {pool} not online after {timeout} s")


def run_batch(scenes: Path, out_root: Path) -> float:
    """Wall time of one batch through the ``render-scene/render-one`` deployment."""
    from flows.batch import BatchParams, batch_render

    start = time.perf_counter()
    summary = batch_render(BatchParams(scenes=[str(scenes)], out_root=str(out_root), device="cpu"))
    seconds = time.perf_counter() - start
    statuses = {r.status for r in summary.rows}
    if statuses != {"completed"}:
        raise RuntimeError(f"batch did not complete: {summary.table()}")
    print(summary.table(), flush=True)
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=10)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--size", type=int, default=64)
    args = parser.parse_args()

    from pytti_engine.perceptors import write_stand_in

    load = os.getloadavg()  # other work on the machine competes with the two workers

    with tempfile.TemporaryDirectory(prefix="pytti-bench-batch-") as tmp:
        work = Path(tmp)
        stand_in = write_stand_in(work / "clip", seed=0)
        write_scenes(work / "scenes", stand_in, count=4, frames=args.frames, steps=args.steps, size=args.size)
        with LocalStack(work / "prefect", env=WORKER_ENV) as stack:
            # the batch's own logs stay local: the server is gone before the log handler's last flush
            os.environ.update(
                {
                    "PREFECT_API_URL": stack.api_url,
                    "DO_NOT_TRACK": "1",
                    "PREFECT_LOGGING_TO_API_ENABLED": "false",
                }
            )
            stack.prefect("work-pool", "create", "pytti-gpu", "--type", "process")
            stack.prefect("work-pool", "create", "pytti-batch", "--type", "process")
            stack.prefect("deploy", "--prefect-file", "deploy/prefect.yaml", "--all")

            first = stack.start_worker("pytti-gpu", limit=1, name="worker-1")
            wait_for_workers(stack, "pytti-gpu", 1)
            one = run_batch(work / "scenes", work / "one-worker")
            second = stack.start_worker("pytti-gpu", limit=1, name="worker-2")
            wait_for_workers(stack, "pytti-gpu", 2)
            two = run_batch(work / "scenes", work / "two-workers")
            for proc in (second, first):
                stack.kill(proc)
                stack.processes.remove(proc)

    print(f"scenes: 4 x {args.frames} frames, {args.steps} steps/frame, {args.size}x{args.size} px, CPU")
    print(
        f"machine: {os.cpu_count()} cores, load average at start {load[0]:.2f}, at end {os.getloadavg()[0]:.2f}"
    )
    print(f"one worker:  {one:.1f} s ({4 / one * 60:.2f} scenes/min)")
    print(f"two workers: {two:.1f} s ({4 / two * 60:.2f} scenes/min)")
    print(f"ratio: {one / two:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
