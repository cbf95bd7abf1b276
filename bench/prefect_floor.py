"""Prefect's own cost per task run, per log line and per progress-artifact update, in this process and
in the temporary API server it starts (a child process): the floor under the render flow's per-frame
overhead (bench/overhead.py), whatever the frame task does.

Each kind runs ``--count`` times inside one flow run, beside a flow run that does nothing; the server's
CPU is read from ``/proc`` (Linux) after a pause that lets it drain its queues. Printed per item:
wall time and CPU time in this process, and CPU time in the server, each minus the empty flow's.

    .venv/bin/python bench/prefect_floor.py   # [--count 100] [--drain 3]

Without a temporary server (``PREFECT_API_URL`` set) the server column says ``n/a``.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast
from uuid import UUID

import common  # noqa: F401  (the environment: offline, no analytics)


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _children() -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(os.getpid())], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split() if _cpu_s(int(p)) > 0]


def measure(run: Callable[[], Any], drain_s: float) -> tuple[float, float, float | None]:
    """(wall s, own CPU s, server CPU s or ``None``) of ``run()``, the server drained for ``drain_s``."""
    server = _children() if "PREFECT_API_URL" not in os.environ else []
    before = {pid: _cpu_s(pid) for pid in server}
    own, wall = time.process_time(), time.perf_counter()
    run()
    wall, own = time.perf_counter() - wall, time.process_time() - own
    time.sleep(drain_s)
    return wall, own, sum(_cpu_s(pid) - t for pid, t in before.items()) if server else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--drain", type=float, default=3.0, help="seconds the server gets to catch up")
    args = parser.parse_args()

    import logging

    from prefect import flow, get_run_logger, task
    from prefect.artifacts import create_progress_artifact, update_progress_artifact
    from prefect.cache_policies import CachePolicy

    logging.getLogger("prefect").setLevel(logging.WARNING)
    results = Path(tempfile.mkdtemp(prefix="pytti-floor-"))

    class FreshKey(CachePolicy):
        def compute_key(self, task_ctx: Any, inputs: Any, flow_parameters: Any, **kwargs: Any) -> str:
            return uuid.uuid4().hex

    @task(  # the frame task's options: a cache key, a persisted JSON result, a custom name
        cache_policy=FreshKey(),
        persist_result=True,
        result_serializer="json",
        cache_result_in_memory=False,
        result_storage=results,
        task_run_name="frame-{index:06d}",
        retries=2,
    )
    def frame_like(index: int) -> dict[str, int]:
        return {"index": index}

    @flow(name="prefect-floor")
    def kind_flow(kind: str, count: int) -> None:
        bar = create_progress_artifact(0.0) if kind == "progress update" else None
        for i in range(count):
            if kind == "task run":
                frame_like(i, return_state=True).result()
            elif kind == "log line":
                get_run_logger().info("frame %d/%d rendered", i, count)
            elif bar is not None:
                update_progress_artifact(cast(UUID, bar), 100.0 * i / count)  # sync call: the id

    kind_flow("none", 1)  # start the API, import everything
    empty = measure(lambda: kind_flow("none", args.count), args.drain)
    print(f"per item, {args.count} items in one flow run, minus an empty flow run:")
    for kind in ("task run", "log line", "progress update"):
        wall, own, server = measure(lambda k=kind: kind_flow(k, args.count), args.drain)  # type: ignore[misc]
        srv = (
            "n/a"
            if server is None or empty[2] is None
            else f"{1000 * (server - empty[2]) / args.count:.1f} ms"
        )
        print(
            f"{kind:16s} wall {1000 * (wall - empty[0]) / args.count:5.1f} ms, "
            f"this process CPU {1000 * (own - empty[1]) / args.count:5.1f} ms, server CPU {srv}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
