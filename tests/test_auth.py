"""A Prefect server that asks who you are: basic auth (PREFECT_SERVER_API_AUTH_STRING on the server,
PREFECT_API_AUTH_STRING on every client, worker and flow run)."""

import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from flows.cli_deploy import api_refusal
from flows.local_stack import LocalStack

SECRET = "pytti:correct-horse-battery"


def test_a_refusing_server_is_one_line_that_names_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PREFECT_API_URL", "http://render-box:4200/api")
    monkeypatch.delenv("PREFECT_API_AUTH_STRING", raising=False)
    request = httpx.Request("POST", "http://render-box:4200/api/flow_runs/")
    error = httpx.HTTPStatusError("401", request=request, response=httpx.Response(401, request=request))
    message = api_refusal(error)
    assert message is not None and "\n" not in message
    assert message.startswith("the Prefect server at http://render-box:4200/api refused the request (401")
    assert "no PREFECT_API_AUTH_STRING" in message and "PREFECT_SERVER_API_AUTH_STRING" in message
    not_found = httpx.HTTPStatusError("404", request=request, response=httpx.Response(404, request=request))
    assert api_refusal(not_found) is None and api_refusal(ValueError("x")) is None


def _wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(1)


@pytest.mark.slow
@pytest.mark.timeout(1800)  # server start, two workers and a render: minutes on a busy 2-core machine
def test_with_auth_the_secret_gets_in_and_nothing_else_does(
    tmp_path: Path, write_scene: Callable[..., Path]
) -> None:
    env = {
        "PREFECT_SERVER_API_AUTH_STRING": SECRET,
        "PREFECT_API_AUTH_STRING": SECRET,
        "OMP_NUM_THREADS": "1",
    }
    with LocalStack(tmp_path / "prefect", env=env, startup_timeout=420) as stack:
        # The API: refused without the secret (health probes excepted), answered with it.
        assert httpx.get(f"{stack.api_url}/health", timeout=10).status_code == 200
        assert stack.api("POST", "/flow_runs/filter", json={}).status_code == 401
        assert (
            stack.api("POST", "/flow_runs/filter", json={}, auth=tuple(SECRET.split(":"))).status_code == 200
        )
        # Every prefect command and worker takes the secret from the environment.
        stack.prefect("work-pool", "create", "pytti-gpu", "--type", "process", timeout=600)
        stack.prefect("deploy", "--prefect-file", "deploy/prefect.yaml", "--name", "render-one", timeout=600)

        # A worker without the secret does not get in.
        intruder = stack.start_worker("pytti-gpu", name="no-secret", env={"PREFECT_API_AUTH_STRING": ""})
        log = stack.home / "no-secret.log"
        _wait_for(lambda: intruder.poll() is not None or "401" in log.read_text(), 180, "worker not refused")
        assert "401" in log.read_text() or intruder.returncode != 0
        stack.kill(intruder)
        stack.processes.remove(intruder)

        # pytti batch without the secret: one line naming the setting, nothing rendered.
        queue = tmp_path / "queue"
        queue.mkdir()
        (queue / "a.yaml").write_text(write_scene(frames=2, name="a.yaml").read_text())
        out = tmp_path / "out"
        argv = [str(stack.bin / "pytti"), "batch", str(queue), "--out", str(out), "--device", "cpu"]
        refused = subprocess.run(
            argv,
            env={**stack.env, "PREFECT_API_AUTH_STRING": ""},
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert refused.returncode == 2, refused.stderr[-2000:]
        assert "refused the request (401 Unauthorized): no PREFECT_API_AUTH_STRING" in refused.stderr
        assert not (out / "a" / "a.mp4").exists()

        # With the secret: the worker takes the fanned-out render, and its flow run reports back.
        stack.start_worker("pytti-gpu", name="with-secret")
        done = subprocess.run(argv, env=stack.env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
        assert "completed" in done.stdout and (out / "a" / "a.mp4").is_file()
        runs = stack.api("POST", "/flow_runs/filter", json={}, auth=tuple(SECRET.split(":"))).json()
        rendered = [r for r in runs if r["deployment_id"] and r["state"]["type"] == "COMPLETED"]
        assert len(rendered) == 1, json.dumps([(r["name"], r["state"]["type"]) for r in runs])


def test_the_kubernetes_worker_takes_the_secret_from_a_secret_and_passes_a_reference() -> None:
    import yaml

    from flows.local_stack import REPO

    manifest = yaml.safe_load((REPO / "deploy" / "k8s" / "worker.yaml").read_text())
    (container,) = manifest["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert "value" not in env["PREFECT_API_AUTH_STRING"]
    secret = env["PREFECT_API_AUTH_STRING"]["valueFrom"]["secretKeyRef"]
    assert (
        env["PREFECT_INTEGRATIONS_KUBERNETES_WORKER_API_AUTH_STRING_SECRET_NAME"]["value"] == secret["name"]
    )
    assert env["PREFECT_INTEGRATIONS_KUBERNETES_WORKER_API_AUTH_STRING_SECRET_KEY"]["value"] == secret["key"]
    template = (REPO / "deploy" / "k8s" / "base-job-template.json").read_text()
    dockerfile = (REPO / "deploy" / "Dockerfile").read_text()
    for text in (template, dockerfile):
        assert "AUTH_STRING=" not in text and 'auth-string":' not in text, "no secret is baked in"
