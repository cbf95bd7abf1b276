"""Tasks of the batch flow: expand scene folders and sweeps into jobs, validate them all, inspect runs."""

import itertools
from pathlib import Path

from prefect import task
from pydantic import BaseModel, ConfigDict

from pytti_engine.confine import check_input, check_output, input_roots, real_path
from pytti_engine.errors import PyttiError
from pytti_engine.fetch import fetched_inputs, url_files
from pytti_engine.identity import RunIdentity, check_run_dir, default_run_dir
from pytti_engine.inputs import InputsRecord
from pytti_engine.job import plan_inputs, plan_keys
from pytti_engine.preflight import preflight
from pytti_engine.rundir import RunPaths, frame_done
from pytti_engine.scene import build_plan, load_scene

SCENE_SUFFIXES = (".yaml", ".yml")


class BatchJob(BaseModel):
    """One render of a batch: a scene file, its overrides and its own run directory."""

    model_config = ConfigDict(frozen=True)

    name: str
    scene_path: str
    out_dir: str
    overrides: tuple[str, ...] = ()


class JobCheck(BaseModel):
    """A job after validation: its frame count and how many of them are already done, or its errors."""

    job: BatchJob
    error: str | None = None
    frames: int = 0
    done_frames: int = 0
    video: str | None = None

    @property
    def finished(self) -> bool:
        """Every frame done and the video written: nothing left to render."""
        return self.error is None and self.frames > 0 and self.done_frames == self.frames and bool(self.video)


def expand_scene_paths(items: list[str]) -> list[Path]:
    """Scene files in the given order; a folder contributes its ``*.yaml``/``*.yml`` files, sorted
    (an empty folder, such as a nightly queue with nothing queued, contributes none).

    Raises:
        ConfinementError: an item lies outside ``PYTTI_ALLOWED_INPUT_ROOTS`` (checked before it is
            looked at).
        PyttiError: an item does not exist.
    """
    roots = input_roots()
    paths: list[Path] = []
    for item in items:
        path = Path(item)
        check_input(path, "scene file or folder", roots)
        if path.is_dir():
            paths.extend(sorted(p for p in path.iterdir() if p.is_file() and p.suffix in SCENE_SUFFIXES))
        elif path.exists():
            paths.append(path)
        else:
            raise PyttiError(f"{path}: no such scene file or folder")
    return paths


def parse_sweep(items: list[str]) -> dict[str, list[str]]:
    """``["seed=1,2,3", "steps_per_frame=20,50"]`` → ``{"seed": ["1","2","3"], ...}``.

    Raises:
        PyttiError: an item is not ``KEY=V1,V2,…``, or a key is given twice.
    """
    sweep: dict[str, list[str]] = {}
    for item in items:
        key, sep, values = item.partition("=")
        key = key.strip()
        parts = [v.strip() for v in values.split(",")]
        if not sep or not key or any(not v for v in parts):
            raise PyttiError(f"--sweep: expected KEY=V1,V2,..., got {item!r}")
        if key in sweep:
            raise PyttiError(f"--sweep: {key} is given twice")
        sweep[key] = parts
    return sweep


def plan_jobs(
    scenes: list[str], out_root: str | Path, overrides: list[str], sweep: dict[str, list[str]]
) -> list[BatchJob]:
    """One job per scene file, times the cartesian product of ``sweep`` (each its own run directory).

    Without a sweep a scene renders into ``OUT_ROOT/<stem>``; with one, into
    ``OUT_ROOT/<stem>/<key=value,...>`` (:func:`pytti_engine.identity.default_run_dir`: a folder that
    holds another render, on disk or earlier in this batch, gets ``-<hash>`` appended instead).
    """
    combos = [list(zip(sweep, values, strict=True)) for values in itertools.product(*sweep.values())]
    root = Path(out_root)
    taken: dict[Path, RunIdentity] = {}
    jobs = []
    for path in expand_scene_paths(scenes):
        for combo in combos:
            name = str(path)
            if combo:
                name = f"{path} [{', '.join(f'{k}={v}' for k, v in combo)}]"
            extra = tuple(f"{k}={v}" for k, v in combo)
            all_overrides = (*overrides, *extra)
            identity = RunIdentity.of(path, all_overrides, root)
            out = default_run_dir(root, path.stem, identity, label=extra, taken=taken)
            taken[real_path(out)] = identity
            jobs.append(BatchJob(name=name, scene_path=str(path), out_dir=str(out), overrides=all_overrides))
    return jobs


def check_job(job: BatchJob) -> JobCheck:
    """Load, plan and check one job as ``pytti validate`` does (:func:`~pytti_engine.preflight.preflight`);
    count its frames that are already done (resume/skip)."""
    try:
        check_output(job.out_dir)
        scene = load_scene(job.scene_path, job.overrides)
        plan = build_plan(scene)
        # what `pytti validate` checks; the device is the worker's
        preflight(scene, plan, name=job.scene_path)
        check_run_dir(
            Path(job.out_dir), RunIdentity.of(job.scene_path, job.overrides, job.out_dir), replace=False
        )
    except PyttiError as e:
        return JobCheck(job=job, error=str(e))
    paths = RunPaths(Path(job.out_dir).resolve())
    try:
        sha256 = InputsRecord.read(paths.inputs_json).hashes.sha256
        inputs = plan_inputs(scene, plan, sha256, url_files(fetched_inputs(scene, paths.root)))
        keys = plan_keys(scene, plan, inputs=inputs, sha256=sha256)
    except PyttiError:  # an input not fetched yet (a URL): no frame can be done
        keys = []
    if not keys:
        return JobCheck(job=job, frames=len(plan.frames), done_frames=0, video=None)
    done = sum(frame_done(paths, i, key) for i, key in enumerate(keys, start=1))
    video = paths.video(Path(job.scene_path).stem)
    return JobCheck(
        job=job, frames=len(keys), done_frames=done, video=str(video) if video.is_file() else None
    )


@task(name="validate-scenes", persist_result=False)
def validate_jobs(jobs: list[BatchJob]) -> list[JobCheck]:
    """Check every job before any is started, so one report lists every error."""
    checks = [check_job(job) for job in jobs]
    seen: dict[str, str] = {}
    for i, check in enumerate(checks):
        out = str(Path(check.job.out_dir).resolve())
        if out in seen and check.error is None:
            checks[i] = check.model_copy(update={"error": f"same run directory {out} as {seen[out]}"})
        seen.setdefault(out, check.job.name)
    return checks


@task(name="inspect-run", persist_result=False)
def inspect_job(job: BatchJob) -> JobCheck:
    """How far a job's run directory got (frames done, video) after its render ended."""
    return check_job(job)
