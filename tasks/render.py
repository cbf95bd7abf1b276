"""Task: render one frame from the previous frame's state, durably.

The frame's cache key is its frame key (known at plan time). A frame that is already done in the
run directory comes back ``Cached`` (its small JSON record is persisted in ``RUN_DIR/.prefect``);
a frame whose files are missing or corrupted is rendered again, whatever Prefect remembers.
"""

import logging
from pathlib import Path
from typing import Any

import torch
from prefect import get_run_logger, task
from prefect.cache_policies import CachePolicy
from prefect.context import TaskRunContext

from pytti_engine.checkpoints import load_checkpoint
from pytti_engine.manifest import models_record, write_models_record
from pytti_engine.render import OutOfMemoryError, RenderContext, StepEvent, render_frame
from pytti_engine.rundir import (
    FrameRecordData,
    Retention,
    frame_done,
    newest_good_checkpoint,
    prune_checkpoints,
    read_record,
    save_state_checkpoint,
    write_frame,
)
from pytti_engine.state import RenderState
from tasks.records import FrameRecord, RunRef
from tasks.resident import HeldState, Job, StateSlot, context_for, job_for, metrics_for, state_slot

PROGRESS_LOGGER = "pytti.progress"


class FrameKeyPolicy(CachePolicy):
    """Cache key = the frame key; a stale Prefect record of a frame that is not done is dropped first."""

    def compute_key(
        self,
        task_ctx: TaskRunContext,
        inputs: dict[str, Any],
        flow_parameters: dict[str, Any],
        **kwargs: Any,
    ) -> str | None:
        run, index = inputs["run"], int(inputs["index"])
        job = job_for(run)
        key = job.keys[index - 1]
        if not frame_done(job.paths, index, key):
            (results_dir(run) / key).unlink(missing_ok=True)
        return key


def results_dir(run: RunRef) -> Path:
    """Where Prefect persists the frame tasks' records for this run."""
    return Path(run.run_dir) / ".prefect"


def _restore_state(
    job: Job, ctx: RenderContext, index: int, logger: logging.Logger | Any, slot: StateSlot
) -> RenderState | None:
    """The state after frame ``index - 1``: the one the previous frame's task handed over in memory
    when frame ``index - 1``'s record still names the checkpoint it wrote; else its checkpoint, or
    rebuilt from the newest good one before it."""
    if index == 1:
        return None
    paths, keys = job.paths, job.keys
    held = slot.take(index - 1, keys[index - 2])
    if held is not None:
        record = read_record(paths, index - 1)
        if record is not None and record.checkpoint_sha256 == held.checkpoint_sha256:
            return held.state
    good = newest_good_checkpoint(paths, index, keys)
    state = None
    if good is not None:
        state, _ = load_checkpoint(
            paths.checkpoint(good),
            learning_rate=ctx.settings.learning_rate,
            device=ctx.device,
            vqgan=ctx.vqgan,
        )
    start = good or 0
    if start < index - 1:
        logger.warning(
            "frame %d: rebuilding the state from frame %d (checkpoints after it are pruned or bad)",
            index,
            start,
        )
        for n in range(start + 1, index):
            state = render_frame(state, job.plan.frames[n - 1], ctx).state
        assert state is not None
        save_state_checkpoint(paths, state, index - 1, keys[index - 2])
    return state


def _record(
    run: RunRef, index: int, key: str, *, skipped: bool, data: FrameRecordData | None = None
) -> FrameRecord:
    """Frame ``index``'s record for the flow, from ``data`` or else from ``records/N.json``."""
    paths = job_for(run).paths
    data = data or read_record(paths, index)
    assert data is not None
    return FrameRecord(
        index=index,
        png=str(paths.frame_png(index)),
        png_sha256=data.png_sha256,
        key=key,
        loss=data.loss,
        seconds=data.seconds,
        skipped=skipped,
    )


def retry_on_out_of_memory(task: Any, task_run: Any, state: Any) -> bool:
    """Retry a frame only when it ran out of (GPU) memory; bad input and NaN losses fail at once."""
    try:
        state.result()
    except (torch.OutOfMemoryError, OutOfMemoryError):  # the engine wraps torch's with advice
        return True
    except Exception:  # noqa: BLE001 - every other failure is final
        return False
    return False


@task(
    name="render-frame",
    retries=2,
    retry_delay_seconds=5,
    retry_condition_fn=retry_on_out_of_memory,
    task_run_name="frame-{index:06d}",
    cache_policy=FrameKeyPolicy(),
    persist_result=True,
    result_serializer="json",
    cache_result_in_memory=False,
)
def render_frame_task(run: RunRef, index: int, prev: FrameRecord | None = None) -> FrameRecord:
    """Render frame ``index`` (1-based) unless it is done; write PNG, checkpoint and record."""
    logger = get_run_logger()
    job = job_for(run)
    key = job.keys[index - 1]
    if frame_done(job.paths, index, key):
        logger.info("frame %d already done: kept", index)
        return _record(run, index, key, skipped=True)
    ctx = context_for(run)
    write_models_record(job.paths, models_record(ctx.perceptors, run.device, ctx.vqgan))
    slot = state_slot(run)
    state = _restore_state(job, ctx, index, logger, slot)
    progress = logging.getLogger(PROGRESS_LOGGER)
    metrics = metrics_for(run)  # None unless the scene says tensorboard: true

    def on_step(event: StepEvent) -> None:
        progress.debug("step", extra={"pytti_step": event, "pytti_frames": run.frame_count})
        if metrics is not None:
            metrics.on_step(event)

    ctx_run = TaskRunContext.get()
    attempts = ctx_run.task_run.run_count if ctx_run and ctx_run.task_run else 1
    try:
        result = render_frame(state, job.plan.frames[index - 1], ctx, on_step=on_step)
    except (torch.OutOfMemoryError, OutOfMemoryError):
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        raise
    written = write_frame(job.paths, result, index, key, attempts=max(1, attempts))
    slot.put(HeldState(index, key, written.checkpoint_sha256, result.state))
    if metrics is not None:
        metrics.on_frame(index, result.seconds, result.image, result.loss)  # flushes to disk
    prune_checkpoints(job.paths, Retention.parse(job.scene.keep_checkpoints), index)
    logger.info(
        "frame %d/%d rendered in %.2f s (loss %.4f)", index, run.frame_count, result.seconds, result.loss
    )
    return _record(run, index, key, skipped=False, data=written)
