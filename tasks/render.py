"""Task: render one frame from the previous frame's checkpoint."""

import math
import time

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from pytti_engine.checkpoints import load_checkpoint
from pytti_engine.errors import PyttiError
from pytti_engine.io import sha256_file
from pytti_engine.render import StepEvent, render_frame
from pytti_engine.rundir import frame_done, write_frame
from tasks.records import FrameRecord, RunRef
from tasks.resident import context_for, job_for


@task(
    name="render-frame",
    task_run_name="frame-{index:06d}",
    cache_policy=NO_CACHE,
    persist_result=False,
    cache_result_in_memory=False,
)
def render_frame_task(run: RunRef, index: int, prev: FrameRecord | None = None) -> FrameRecord:
    """Render frame ``index`` (1-based) unless it is already done; write its PNG and checkpoint."""
    logger = get_run_logger()
    job = job_for(run)
    key = job.keys[index - 1]
    paths = job.paths
    if frame_done(paths, index, key):
        logger.info("frame %d already done: kept", index)
        png = paths.frame_png(index)
        return FrameRecord(index=index, png=str(png), png_sha256=sha256_file(png), key=key, skipped=True)
    ctx = context_for(run)
    state = None
    if index > 1:
        if not frame_done(paths, index - 1, job.keys[index - 2]):
            raise PyttiError(
                f"frame {index}: frame {index - 1} is not done, so there is no state to continue from"
            )
        state, _ = load_checkpoint(
            paths.checkpoint(index - 1), learning_rate=ctx.settings.learning_rate, device=ctx.device
        )
    start = time.perf_counter()

    def on_step(event: StepEvent) -> None:
        if event.step == event.steps:
            logger.debug("frame %d step %d/%d loss %.4f", event.frame, event.step, event.steps, event.loss)

    result = render_frame(state, job.plan.frames[index - 1], ctx, on_step=on_step)
    meta = write_frame(paths, result, index, key)
    seconds = time.perf_counter() - start
    loss = None if math.isnan(result.loss) else result.loss
    logger.info("frame %d/%d rendered in %.2f s (loss %s)", index, run.frame_count, seconds, loss)
    return FrameRecord(
        index=index,
        png=str(paths.frame_png(index)),
        png_sha256=meta.png_sha256,
        key=key,
        loss=loss,
        seconds=seconds,
    )
