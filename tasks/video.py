"""Task: assemble the run's frames into the video."""

from pathlib import Path

from prefect import get_run_logger, task

from pytti_engine.video import EncodeSettings, assemble_video
from tasks.records import RunRef
from tasks.resident import job_for


@task(name="assemble-video", retries=1, retry_delay_seconds=2, persist_result=False)
def assemble_video_task(run: RunRef) -> str:
    """Encode ``frames/000001.png … frames/N.png`` (an explicit list) into ``<stem>.mp4``."""
    job = job_for(run)
    frames = [job.paths.frame_png(i) for i in range(1, run.frame_count + 1)]
    settings = EncodeSettings(fps=job.scene.fps, crf=job.scene.output.crf, preset=job.scene.output.preset)
    out = assemble_video(frames, job.paths.video(run.video_stem), settings)
    get_run_logger().info("video: %s (%d frames at %g fps)", out, len(frames), job.scene.fps)
    return str(Path(out))
