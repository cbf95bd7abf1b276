"""Deployments: ``pytti serve``'s view of deploy/prefect.yaml (fast), and end to end against a real
``prefect server`` on 127.0.0.1 with process work pools and workers (slow).

The slow tests start everything through :class:`flows.local_stack.LocalStack` (own PREFECT_HOME, a
free port) and stop it by PID (process group, SIGTERM then SIGKILL); every wait is bounded.
"""

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from flows.cli import main
from flows.local_stack import LocalStack
from flows.serve import ZOMBIE_AUTOMATION, deployments_from_file, zombie_automation
from pytti_engine.video import probe_video

TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def test_serve_reads_the_deployments_and_schedules_from_prefect_yaml() -> None:
    deployments = {d.name: d for d in deployments_from_file()}
    assert set(deployments) == {"render-one", "nightly", "batch"}
    nightly = deployments["nightly"]
    assert nightly.flow_name == "batch-render"
    (schedule,) = nightly.schedules or []
    assert (schedule.schedule.cron, schedule.schedule.timezone) == ("0 1 * * *", "Europe/Berlin")
    assert nightly.parameters["params"]["deployment"] is None  # a served batch renders in process
    assert nightly.parameters["params"]["scenes"] == ["scenes/queue"]
    assert deployments["render-one"].enforce_parameter_schema
    assert "RenderParams" in json.dumps(deployments["render-one"]._parameter_openapi_schema.model_dump())


def test_serve_dry_run_lists_what_it_would_serve(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--dry-run", "--only", "nightly"]) == 0
    assert capsys.readouterr().out.strip() == "batch-render/nightly  schedules: 0 1 * * * Europe/Berlin"
    assert main(["serve", "--dry-run", "--only", "nope"]) == 2


def test_the_zombie_automation_waits_for_missed_heartbeats() -> None:
    automation = zombie_automation(heartbeat_seconds=30, missed=3)
    assert automation.name == ZOMBIE_AUTOMATION
    assert automation.trigger.within.total_seconds() == 105
    assert automation.actions[0].state.value == "CRASHED"


# --- end to end ------------------------------------------------------------------------------------


def _wait_run(
    stack: LocalStack, run_id: str, timeout: float = 240, want: set[str] = TERMINAL
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = stack.api("GET", f"/flow_runs/{run_id}").json()
        if run["state"]["type"] in want:
            return run
        time.sleep(1)
    logs = {p.name: p.read_text()[-3000:] for p in stack.home.glob("*.log") if p.name != "server.log"}
    raise TimeoutError(f"flow run {run_id} not in {want} after {timeout} s: {run['state']}\n{logs}")


def _assert_completed(stack: LocalStack, run: dict[str, Any]) -> None:
    if run["state"]["type"] == "COMPLETED":
        return
    logs = stack.api("POST", "/logs/filter", json={"logs": {"flow_run_id": {"any_": [run["id"]]}}}).json()
    text = "\n".join(f"{line['level']} {line['message']}" for line in logs)[-6000:]
    pytest.fail(f"run {run['name']} ended {run['state']['type']}: {run['state']['message']}\n{text}")


def _deployment(stack: LocalStack, name: str) -> dict[str, Any]:
    response = stack.api("GET", f"/deployments/name/{name}")
    assert response.status_code == 200, response.text
    return response.json()


def _trigger(stack: LocalStack, deployment: str, params: dict[str, Any]) -> str:
    """What the UI's "Run" form does: POST /deployments/{id}/create_flow_run."""
    dep = _deployment(stack, deployment)
    response = stack.api(
        "POST", f"/deployments/{dep['id']}/create_flow_run", json={"parameters": {"params": params}}
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    with LocalStack(tmp_path_factory.mktemp("prefect-e2e"), env={"OMP_NUM_THREADS": "1"}) as stack:
        stack.prefect("work-pool", "create", "pytti-gpu", "--type", "process")
        stack.prefect("work-pool", "create", "pytti-batch", "--type", "process")
        stack.prefect("deploy", "--prefect-file", "deploy/prefect.yaml", "--all")
        yield stack


@pytest.mark.slow
def test_deploy_trigger_from_the_api_and_fan_out_a_batch(
    stack: LocalStack, write_scene: Callable[..., Path], tmp_path: Path
) -> None:
    gpu_worker = stack.start_worker("pytti-gpu", limit=1)
    stack.start_worker("pytti-batch", limit=1)

    # The nightly deployment carries its cron schedule and time zone.
    (schedule,) = _deployment(stack, "batch-render/nightly")["schedules"]
    assert schedule["schedule"]["cron"] == "0 1 * * *" and schedule["schedule"]["timezone"] == "Europe/Berlin"

    # The Kubernetes variant's base job template is accepted by the server, GPU variables included.
    template = "deploy/k8s/base-job-template.json"
    stack.prefect("work-pool", "create", "pytti-k8s", "--type", "kubernetes", "--base-job-template", template)
    k8s = stack.api("GET", "/work_pools/pytti-k8s").json()["base_job_template"]
    container = k8s["job_configuration"]["job_manifest"]["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "{{ gpu_count }}"
    assert k8s["variables"]["properties"]["gpu_count"]["default"] == 1

    # A bad parameter is rejected by the server before any worker sees it.
    dep = _deployment(stack, "render-scene/render-one")
    bad = stack.api(
        "POST",
        f"/deployments/{dep['id']}/create_flow_run",
        json={"parameters": {"params": {"scene_path": "a", "width": 3}}},
    )
    assert bad.status_code == 409 and "params.width" in bad.text

    # One scene through the API, with parameters, as the UI's form sends them.
    scene = write_scene(frames=3, name="one.yaml")
    run_id = _trigger(
        stack,
        "render-scene/render-one",
        {"scene_path": str(scene), "out_dir": str(tmp_path / "one"), "device": "cpu", "seed": 11},
    )
    run = _wait_run(stack, run_id)
    _assert_completed(stack, run)
    info = probe_video(tmp_path / "one" / "one.mp4")
    assert (info.frames, info.width) == (3, 32)
    assert json.loads((tmp_path / "one" / "run.json").read_text())["overrides"] == ["seed=11"]

    # A batch of two scenes: each its own render-one run on the GPU pool, then a summary table.
    queue = tmp_path / "queue"
    queue.mkdir()
    for name in ("a.yaml", "b.yaml"):
        (queue / name).write_text(write_scene(frames=2, name=name).read_text())
    batch_id = _trigger(
        stack,
        "batch-render/batch",
        {"scenes": [str(queue)], "out_root": str(tmp_path / "out"), "device": "cpu"},
    )
    batch = _wait_run(stack, batch_id, timeout=300)
    _assert_completed(stack, batch)
    children = stack.api(
        "POST", "/flow_runs/filter", json={"flow_runs": {"parent_flow_run_id": {"any_": [batch_id]}}}
    ).json()
    assert sorted(c["state"]["type"] for c in children) == ["COMPLETED", "COMPLETED"]
    assert {c["work_pool_name"] for c in children} == {"pytti-gpu"}
    artifacts = stack.api(
        "POST", "/artifacts/filter", json={"artifacts": {"flow_run_id": {"any_": [batch_id]}}}
    ).json()
    (table,) = [a for a in artifacts if a["key"] == "batch-summary"]
    rows = json.loads(table["data"]) if isinstance(table["data"], str) else table["data"]
    assert [(Path(r["scene"]).name, r["status"], r["frames"]) for r in rows] == [
        ("a.yaml", "completed", "2/2"),
        ("b.yaml", "completed", "2/2"),
    ]
    assert all(Path(r["video"]).is_file() for r in rows)
    stack.kill(gpu_worker)
    stack.processes.remove(gpu_worker)


@pytest.mark.slow
def test_a_run_whose_worker_died_is_marked_crashed_and_resumes_on_retry(
    stack: LocalStack, write_scene: Callable[..., Path], tmp_path: Path
) -> None:
    from flows.serve import install_zombie_automation  # needs PREFECT_API_URL of the stack

    env = {"PREFECT_FLOWS_HEARTBEAT_FREQUENCY": "30"}
    _run_with_env(stack, lambda: install_zombie_automation(heartbeat_seconds=30, missed=1))
    doomed = stack.start_worker("pytti-gpu", limit=1, name="doomed", env=env)
    scene = write_scene(frames=40, steps=20, name="long.yaml")
    out = tmp_path / "long"
    run_id = _trigger(
        stack, "render-scene/render-one", {"scene_path": str(scene), "out_dir": str(out), "device": "cpu"}
    )
    deadline = time.monotonic() + 180
    while not (out / "checkpoints" / "000002.pt").exists():
        assert time.monotonic() < deadline, "the run did not reach frame 2"
        time.sleep(0.5)
    _hard_kill(stack, doomed)  # the worker and its flow-run process die without a word (node lost)
    killed_at = time.monotonic()
    done = sorted((out / "checkpoints").glob("*.pt"))
    assert len(done) < 40
    crashed = _wait_run(stack, run_id, timeout=150, want={"CRASHED", "COMPLETED", "FAILED"})
    assert crashed["state"]["type"] == "CRASHED", crashed["state"]
    assert "missing heartbeats" in crashed["state"]["message"]
    assert time.monotonic() - killed_at < 120
    kept = {p.name: p.stat().st_mtime_ns for p in (out / "frames").glob("*.png")}

    stack.start_worker("pytti-gpu", limit=1, name="replacement")
    retry = {
        "state": {"type": "SCHEDULED", "name": "AwaitingRetry", "message": "Retry from the UI"},
        "force": True,
    }
    assert stack.api("POST", f"/flow_runs/{run_id}/set_state", json=retry).status_code in (200, 201)
    finished = _wait_run(stack, run_id, timeout=240)
    _assert_completed(stack, finished)
    assert finished["run_count"] >= 2
    assert probe_video(out / "long.mp4").frames == 40
    for name, mtime in kept.items():  # frames done before the crash were kept, not re-rendered
        if (out / "checkpoints" / name.replace(".png", ".pt")).exists():
            assert (out / "frames" / name).stat().st_mtime_ns == mtime


def _run_with_env(stack: LocalStack, fn: Callable[[], object]) -> object:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: stack.api_url}):
        return fn()


def _hard_kill(stack: LocalStack, proc: Any) -> None:
    import os
    import signal

    from flows.local_stack import _children

    for pid in [*_children(proc.pid), proc.pid]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait(timeout=10)
    stack.processes.remove(proc)


@pytest.mark.slow
def test_pytti_serve_serves_the_deployments_with_their_schedules(
    stack: LocalStack, write_scene: Callable[..., Path], tmp_path: Path
) -> None:
    # One path at a time: the pool-based deployments of the same names go first (a served deployment
    # that replaced one in place would keep its storage settings, and its runs would not load).
    for name in ("render-scene/render-one", "batch-render/nightly"):
        assert stack.api("DELETE", f"/deployments/{_deployment(stack, name)['id']}").status_code == 204
    argv = [str(stack.bin / "pytti"), "serve", "--only", "render-one", "--only", "nightly"]
    served = stack.spawn("serve", argv)
    deadline = time.monotonic() + 120
    names = ("render-scene/render-one", "batch-render/nightly")
    while any(stack.api("GET", f"/deployments/name/{name}").status_code != 200 for name in names):
        assert served.poll() is None, (stack.home / "serve.log").read_text()[-3000:]
        assert time.monotonic() < deadline, "pytti serve did not register its deployments"
        time.sleep(1)
    served_dep = _deployment(stack, "render-scene/render-one")
    assert served_dep["work_pool_name"] is None and not served_dep["pull_steps"]  # in memory, no pool
    (schedule,) = _deployment(stack, "batch-render/nightly")["schedules"]
    assert schedule["schedule"]["cron"] == "0 1 * * *" and schedule["schedule"]["timezone"] == "Europe/Berlin"
    scene = write_scene(frames=2, name="served.yaml")
    run_id = _trigger(
        stack,
        "render-scene/render-one",
        {"scene_path": str(scene), "out_dir": str(tmp_path / "s"), "device": "cpu"},
    )
    _assert_completed(stack, _wait_run(stack, run_id, timeout=180))
    assert probe_video(tmp_path / "s" / "served.mp4").frames == 2
    stack.kill(served)
    stack.processes.remove(served)
