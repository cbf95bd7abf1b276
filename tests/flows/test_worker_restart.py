"""Restarting a process worker does not lose its render (issue 16.10), against a real ``prefect server``
on 127.0.0.1: the worker loop stops between renders, and a render outlives a worker killed under it."""

import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from flows.local_stack import REPO, LocalStack
from pytti_engine.video import probe_video

pytestmark = pytest.mark.slow

FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    with LocalStack(tmp_path_factory.mktemp("prefect-restart"), env={"OMP_NUM_THREADS": "1"}) as stack:
        stack.prefect("work-pool", "create", "pytti-gpu", "--type", "process")
        stack.prefect("deploy", "--prefect-file", "deploy/prefect.yaml", "--name", "render-one")
        yield stack


def _api(stack: LocalStack, method: str, path: str, **kwargs: Any) -> Any:
    """One REST call; a busy SQLite server answers 503 ("database is locked"), and clients retry."""
    for _ in range(15):
        response = stack.api(method, path, **kwargs)
        if response.status_code != 503:
            return response
        time.sleep(2)
    return response


def _trigger(stack: LocalStack, scene: Path, out: Path) -> str:
    dep = _api(stack, "GET", "/deployments/name/render-scene/render-one").json()
    params = {"scene_path": str(scene), "out_dir": str(out), "device": "cpu"}
    body = {"parameters": {"params": params}}
    response = _api(stack, "POST", f"/deployments/{dep['id']}/create_flow_run", json=body)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def _state(stack: LocalStack, run_id: str) -> dict[str, Any]:
    return dict(_api(stack, "GET", f"/flow_runs/{run_id}").json()["state"])


def _wait_final(stack: LocalStack, run_id: str, timeout: float = 400) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while (state := _state(stack, run_id))["type"] not in FINAL:
        assert time.monotonic() < deadline, f"run {run_id} still {state['type']}"
        time.sleep(1)
    return state


def _wait_frame(out: Path, index: int, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not (out / "records" / f"{index:06d}.json").exists():
        assert time.monotonic() < deadline, f"the render did not reach frame {index}"
        time.sleep(0.2)


def test_the_worker_loop_stops_between_renders(
    stack: LocalStack, write_scene: Callable[..., Path], tmp_path: Path
) -> None:
    env = {"PATH": f"{stack.bin}{os.pathsep}{os.environ['PATH']}", "PYTTI_WORKER_IDLE_SECONDS": "2"}
    loop = stack.spawn(
        "worker-loop", ["sh", str(REPO / "deploy" / "worker-loop.sh"), "--name", "looped"], env
    )
    scene, out = write_scene(frames=12, size=16, steps=4, name="looped.yaml"), tmp_path / "looped"
    run_id = _trigger(stack, scene, out)
    _wait_frame(out, 2)
    os.kill(loop.pid, signal.SIGTERM)  # `systemctl stop` with KillMode=mixed, `docker stop`, `kill PID`
    waiting = _trigger(stack, scene, tmp_path / "not-started")  # queued after the stop: never taken
    assert _wait_final(stack, run_id)["type"] == "COMPLETED"
    assert loop.wait(timeout=120) == 0
    stack.processes.remove(loop)
    assert probe_video(out / "looped.mp4").frames == 12
    assert _state(stack, waiting)["type"] == "SCHEDULED" and not (tmp_path / "not-started").exists()
    _api(stack, "DELETE", f"/flow_runs/{waiting}")


def test_a_render_outlives_a_worker_killed_under_it(
    stack: LocalStack, write_scene: Callable[..., Path], tmp_path: Path
) -> None:
    worker = stack.start_worker("pytti-gpu", limit=1, name="doomed")
    scene, out = write_scene(frames=12, size=16, steps=4, name="orphan.yaml"), tmp_path / "orphan"
    run_id = _trigger(stack, scene, out)
    _wait_frame(out, 2)
    os.kill(worker.pid, signal.SIGKILL)  # the worker alone: the flow run's log pipe loses its reader
    worker.wait(timeout=30)
    stack.processes.remove(worker)
    state = _wait_final(stack, run_id)
    assert state["type"] == "COMPLETED", state
    assert probe_video(out / "orphan.mp4").frames == 12
