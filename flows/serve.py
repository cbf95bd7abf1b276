"""One GPU box, no work pool: serve the deployments of ``deploy/prefect.yaml`` from this process.

``deploy/prefect.yaml`` stays the one description of the deployments (names, parameters, cron
schedules with their time zones, tags); ``pytti serve`` turns each entry into ``flow.to_deployment``
and calls ``prefect.serve``. Served runs start in subprocesses of this process, at most ``limit`` at a
time (one GPU: 1), and a served batch renders its scenes as subflows in its own run (fanning out to
``render-one`` would wait for the slot the batch itself holds).

Also here: the crash-detection automation (``pytti crash-detection``): runs whose heartbeats stop
(the worker or its host died) are marked ``Crashed``, so they can be retried and resume from their
frames.
"""

import importlib
from datetime import timedelta
from pathlib import Path
from typing import Any, cast

import yaml
from prefect import Flow
from prefect.deployments.runner import RunnerDeployment
from prefect.schedules import Cron, Interval, Schedule

from pytti_engine.errors import PyttiError

DEFAULT_PREFECT_FILE = Path(__file__).resolve().parent.parent / "deploy" / "prefect.yaml"
ZOMBIE_AUTOMATION = "pytti-crash-zombie-runs"


def _flow_at(entrypoint: str) -> Flow[Any, Any]:
    """``flows/batch.py:batch_render`` → the flow object of the importable module ``flows.batch``."""
    path, sep, name = entrypoint.partition(":")
    if not sep or not path.endswith(".py"):
        raise PyttiError(f"entrypoint {entrypoint!r}: expected path/to/module.py:flow_name")
    module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
    flow = getattr(module, name, None)
    if not isinstance(flow, Flow):
        raise PyttiError(f"entrypoint {entrypoint!r}: {name} is not a flow")
    return flow


def _schedule(spec: dict[str, Any]) -> Schedule:
    if "cron" in spec:
        return Cron(spec["cron"], timezone=spec.get("timezone"), active=spec.get("active", True))
    if "interval" in spec:
        return Interval(timedelta(seconds=spec["interval"]), timezone=spec.get("timezone"))
    raise PyttiError(f"schedule {spec!r}: only cron and interval schedules are served")


def _served_parameters(flow: Flow[Any, Any], parameters: dict[str, Any]) -> dict[str, Any]:
    """A served batch renders in its own process: one process holds the one GPU."""
    if flow.name == "batch-render":
        params = dict(parameters.get("params") or {})
        params["deployment"] = None
        return {**parameters, "params": params}
    return parameters


def deployments_from_file(
    prefect_file: Path = DEFAULT_PREFECT_FILE, only: list[str] | None = None
) -> list[RunnerDeployment]:
    """The deployments of a ``prefect.yaml`` as served deployments (with their schedules).

    Args:
        prefect_file: the ``prefect.yaml``.
        only: deployment names to keep (default: all).

    Raises:
        PyttiError: the file cannot be read, or an entry or name is not usable.
    """
    try:
        config = yaml.safe_load(Path(prefect_file).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise PyttiError(f"{prefect_file}: cannot read deployments: {e}") from e
    specs = config.get("deployments") or []
    unknown = set(only or []) - {s.get("name") for s in specs}
    if unknown:
        raise PyttiError(f"{prefect_file}: no deployment named {', '.join(sorted(unknown))}")
    out = []
    for spec in specs:
        if only and spec["name"] not in only:
            continue
        flow = _flow_at(spec["entrypoint"])
        out.append(
            cast(  # a sync caller gets the deployment itself, not a coroutine
                RunnerDeployment,
                flow.to_deployment(
                    name=spec["name"],
                    description=spec.get("description"),
                    tags=spec.get("tags"),
                    parameters=_served_parameters(flow, spec.get("parameters") or {}),
                    schedules=[_schedule(s) for s in spec.get("schedules") or []],
                    enforce_parameter_schema=spec.get("enforce_parameter_schema", True),
                ),
            )
        )
    return out


def serve_file(
    prefect_file: Path = DEFAULT_PREFECT_FILE, only: list[str] | None = None, limit: int = 1
) -> None:
    """Serve the deployments until interrupted; at most ``limit`` runs at once."""
    from prefect import serve

    serve(*deployments_from_file(prefect_file, only), limit=limit)


def zombie_automation(heartbeat_seconds: int = 180, missed: int = 3) -> Any:
    """The automation that marks flow runs ``Crashed`` after ``missed`` heartbeats did not arrive.

    Flow runs send a heartbeat every ``PREFECT_FLOWS_HEARTBEAT_FREQUENCY`` seconds (default 180,
    minimum 30) while they run; the OSS server ships no automation that acts on their absence.
    """
    from prefect.automations import Automation
    from prefect.client.schemas.objects import StateType
    from prefect.events.actions import ChangeFlowRunState
    from prefect.events.schemas.automations import EventTrigger, Posture
    from prefect.events.schemas.events import ResourceSpecification

    trigger = EventTrigger(
        after={"prefect.flow-run.heartbeat"},
        expect={
            "prefect.flow-run.heartbeat",
            "prefect.flow-run.Completed",
            "prefect.flow-run.Failed",
            "prefect.flow-run.Cancelled",
            "prefect.flow-run.Crashed",
        },
        match=ResourceSpecification({"prefect.resource.id": ["prefect.flow-run.*"]}),
        for_each={"prefect.resource.id"},
        posture=Posture.Proactive,
        threshold=1,
        within=timedelta(seconds=heartbeat_seconds * missed + heartbeat_seconds // 2),
    )
    action = ChangeFlowRunState(
        state=StateType.CRASHED,
        message=f"missing heartbeats: no heartbeat for {missed} x {heartbeat_seconds} s (worker or host lost)",
    )
    return Automation(
        name=ZOMBIE_AUTOMATION,
        description="Mark flow runs whose heartbeats stopped as Crashed, so they can be retried",
        trigger=trigger,
        actions=[action],
    )


def install_zombie_automation(heartbeat_seconds: int = 180, missed: int = 3) -> str:
    """Create (or replace) the crash-detection automation on the configured server; returns its id."""
    from prefect.automations import Automation

    try:
        cast(Automation, Automation.read(name=ZOMBIE_AUTOMATION)).delete()  # sync call: no coroutine
    except ValueError:
        pass
    return str(zombie_automation(heartbeat_seconds, missed).create().id)
