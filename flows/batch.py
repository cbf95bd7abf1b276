"""Flow: render many scenes (or a sweep of one), each as its own flow run.

Phases: expand folders and sweeps into jobs → validate every job (one report of every error; nothing
starts if any is invalid, unless ``skip_invalid``) → skip finished jobs → render the rest, each as a
run of the ``render-scene`` deployment when it exists (fan-out across the workers of its pool,
bounded by the pool's and workers' limits), else as subflows in this process → a summary table.
A failing scene does not stop the others. Re-running the batch skips finished scenes, and failed ones
resume from their last done frame (the run directory is the source of truth).

No ``from __future__ import annotations`` here (PrefectHQ/prefect#19447).
"""

import time
import uuid
from typing import cast

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import FlowRun, State
from prefect.deployments import run_deployment
from prefect.exceptions import ObjectNotFound
from pydantic import BaseModel, ConfigDict, Field

from flows.params import RenderParams, device_choice_list
from flows.pipes import keep_output_alive
from flows.render_scene import render_scene
from pytti_engine.confine import check_output, renders_root, under_renders_root
from pytti_engine.errors import PyttiError
from tasks.batch import BatchJob, JobCheck, inspect_job, plan_jobs, validate_jobs

DEFAULT_DEPLOYMENT = "render-scene/render-one"


class BatchParams(BaseModel):
    """Parameters of a batch render (the Prefect UI shows them as a form)."""

    model_config = ConfigDict(json_schema_extra=device_choice_list)

    scenes: list[str] = Field(min_length=1, description="Scene files, or folders of *.yaml scene files")
    out_root: str | None = Field(
        default=None,
        description="Each scene renders into a folder named after it in here; a relative path is inside "
        "the worker's renders root (PYTTI_RENDERS_ROOT). Empty: the renders root itself",
    )
    device: str = Field(
        default="auto", pattern=r"^(auto|cpu|cuda(:\d+)?|mps)$", description="auto, cpu or cuda:N"
    )
    overrides: list[str] = Field(default_factory=list, description="Overrides for every scene, KEY=VALUE")
    sweep: dict[str, list[str]] = Field(
        default_factory=dict,
        description="KEY: [V1, V2, ...]; renders every combination, each in OUT_ROOT/STEM/KEY=VALUE,...",
    )
    skip_invalid: bool = Field(default=False, description="Render the valid scenes even if some are invalid")
    deployment: str | None = Field(
        default=DEFAULT_DEPLOYMENT,
        description="Run each scene as a run of this deployment when it exists; empty: render in process",
    )
    poll_seconds: float = Field(default=2.0, ge=0.1, le=60, description="How often to poll child runs")


class BatchRow(BaseModel):
    """One line of the summary table."""

    scene: str
    status: str
    frames: str
    seconds: float
    video: str


class BatchSummary(BaseModel):
    """What a batch returns (and what ``BatchFailed`` carries)."""

    rows: list[BatchRow]

    def count(self, status: str) -> int:
        """Rows whose status starts with ``status``."""
        return sum(r.status.startswith(status) for r in self.rows)

    def table(self) -> str:
        """A plain-text table for the terminal."""
        lines = [f"{'status':<10} {'frames':>9} {'time':>8}  scene -> video"]
        for r in self.rows:
            lines.append(
                f"{r.status[:10]:<10} {r.frames:>9} {r.seconds:>7.1f}s  {r.scene} -> {r.video or '-'}"
            )
            if len(r.status) > 10:
                lines.append(f"    {r.status}")
        return "\n".join(lines)


class BatchInvalid(PyttiError):
    """Some scenes of a batch are invalid and ``skip_invalid`` is off: nothing was started."""


class BatchFailed(PyttiError):
    """Some scenes of a batch failed; the others ran to the end. ``summary`` has every row."""

    def __init__(self, message: str, summary: BatchSummary) -> None:
        super().__init__(message)
        self.summary = summary


class _Outcome(BaseModel):
    status: str
    seconds: float


@flow(name="batch-render")
def batch_render(params: BatchParams) -> BatchSummary:
    """Validate every scene, then render each as its own flow run; publish a summary table."""
    keep_output_alive()  # a restarted worker (its log pipe closed) must not kill the batch
    logger = get_run_logger()
    # 1. Jobs: folders expanded, sweeps multiplied out, each job with its own run directory.
    out_root = under_renders_root(params.out_root) if params.out_root else renders_root()
    check_output(out_root, "out_root")
    jobs = plan_jobs(params.scenes, out_root, params.overrides, params.sweep)
    if not jobs:
        note = f"nothing to render: no scene files (*.yaml, *.yml) in {', '.join(params.scenes)}"
        logger.info(note)
        create_markdown_artifact(f"### Batch summary\n\n{note}\n", key="batch-summary", description=note)
        return BatchSummary(rows=[])
    # 2. Validate all of them before starting any.
    checks = validate_jobs(jobs)
    invalid = [c for c in checks if c.error]
    if invalid:
        report = _invalid_report(invalid, len(checks))
        create_markdown_artifact(report, key="batch-validation", description="invalid scenes")
        if not params.skip_invalid:
            raise BatchInvalid(report)
        logger.warning("skipping %d invalid scene(s):\n%s", len(invalid), report)
    # 3. Render what is not finished yet, through the deployment or in process.
    todo = [c for c in checks if not c.error and not c.finished]
    deployment = _existing_deployment(params.deployment)
    logger.info(
        "%d job(s): %d invalid, %d already finished, %d to render %s",
        len(checks),
        len(invalid),
        sum(c.finished for c in checks),
        len(todo),
        f"as runs of {deployment}" if deployment else "in this process",
    )
    render = _fan_out if deployment else _in_process
    outcomes = render([c.job for c in todo], params, deployment or "")
    # 4. Summary table from the run directories (the source of truth), then the verdict.
    summary = _summarize(checks, outcomes)
    create_table_artifact(
        [r.model_dump() for r in summary.rows], key="batch-summary", description="batch render summary"
    )
    failed = len(summary.rows) - sum(summary.count(s) for s in ("completed", "kept", "invalid"))
    if failed:
        raise BatchFailed(
            f"{failed} of {len(summary.rows)} scene(s) did not finish:\n{summary.table()}", summary
        )
    return summary


def _invalid_report(invalid: list[JobCheck], total: int) -> str:
    lines = [f"{len(invalid)} of {total} scene(s) are invalid:", ""]
    for check in invalid:
        lines.append(f"- {check.job.name}:")
        lines.extend(f"    {line}" for line in (check.error or "").splitlines())
    return "\n".join(lines)


def _existing_deployment(name: str | None) -> str | None:
    if not name:
        return None
    with get_client(sync_client=True) as client:
        try:
            client.read_deployment_by_name(name)
        except ObjectNotFound:
            get_run_logger().info("no deployment %s: rendering in this process", name)
            return None
    return name


def _render_params(job: BatchJob, params: BatchParams) -> RenderParams:
    return RenderParams(
        scene_path=job.scene_path, out_dir=job.out_dir, device=params.device, overrides=list(job.overrides)
    )


def _in_process(jobs: list[BatchJob], params: BatchParams, _: str) -> dict[str, _Outcome]:
    """One subflow per job, one after another (one device in this process)."""
    outcomes = {}
    for job in jobs:
        start = time.perf_counter()
        state = render_scene(_render_params(job, params), return_state=True)
        outcomes[job.out_dir] = _Outcome(status=_status(state), seconds=time.perf_counter() - start)
    return outcomes


def _fan_out(jobs: list[BatchJob], params: BatchParams, deployment: str) -> dict[str, _Outcome]:
    """One deployment run per job, all submitted at once; the work pool decides how many run together."""
    runs: dict[uuid.UUID, BatchJob] = {}
    for job in jobs:
        run = cast(  # called from a sync flow: the run itself, not a coroutine
            FlowRun,
            run_deployment(
                name=deployment,
                parameters={"params": _render_params(job, params).model_dump(mode="json", exclude_none=True)},
                timeout=0,
                as_subflow=True,
            ),
        )
        runs[run.id] = job
    finished = _wait_for(set(runs), params.poll_seconds)
    return {
        runs[run_id].out_dir: _Outcome(status=_status(r.state), seconds=_seconds(r))
        for run_id, r in finished.items()
    }


def _wait_for(run_ids: set[uuid.UUID], poll_seconds: float) -> dict[uuid.UUID, FlowRun]:
    done: dict[uuid.UUID, FlowRun] = {}
    with get_client(sync_client=True) as client:
        while len(done) < len(run_ids):
            for run_id in run_ids - set(done):
                run = client.read_flow_run(run_id)
                if run.state is not None and run.state.is_final():
                    done[run_id] = run
                    get_run_logger().info("%s: %s", run.name, run.state.name)
            if len(done) < len(run_ids):
                time.sleep(poll_seconds)
    return done


def _seconds(run: FlowRun) -> float:
    if run.start_time and run.end_time:
        return (run.end_time - run.start_time).total_seconds()
    return run.total_run_time.total_seconds()


def _status(state: State | None) -> str:
    """``completed``, or the state's type and message (``failed: …``, ``crashed: …``)."""
    if state is None:
        return "unknown"
    if state.is_completed():
        return "completed"
    return f"{state.type.value.lower()}: {state.message or state.name}"


def _summarize(checks: list[JobCheck], outcomes: dict[str, _Outcome]) -> BatchSummary:
    rows = []
    for check in checks:
        job = check.job
        if check.error:
            rows.append(
                BatchRow(scene=job.name, status=f"invalid: {check.error}", frames="-", seconds=0, video="")
            )
            continue
        outcome = outcomes.get(job.out_dir)
        now = inspect_job(job) if outcome else check
        status = outcome.status if outcome else "kept (already finished)"
        rows.append(
            BatchRow(
                scene=job.name,
                status=status,
                frames=f"{now.done_frames}/{now.frames}",
                seconds=round(outcome.seconds if outcome else 0.0, 2),
                video=now.video or "",
            )
        )
    return BatchSummary(rows=rows)
