"""Task: assemble the run's frames into the video (and the GIF/WebM/depth video the scene asks for)."""

from dataclasses import replace
from pathlib import Path

import torch
from prefect import get_run_logger, task

from pytti_engine.exports import depth_provider_for, export_depth_maps, export_flow_maps, flow_runtime
from pytti_engine.video import VideoOutputs, assemble_outputs, assemble_video
from tasks.records import RunRef
from tasks.resident import flows_dir, job_for


@task(name="assemble-video", retries=1, retry_delay_seconds=2, persist_result=False)
def assemble_video_task(run: RunRef, metadata: dict[str, str] | None = None) -> str:
    """Encode ``frames/000001.png … frames/N.png`` (an explicit list) into ``<stem>.mp4`` and extras.

    With ``export: [depth]``, also writes ``depth/NNNNNN.png`` per frame and ``<stem>_depth.mp4``; with
    ``export: [flow]``, ``flow/NNNNNN.png`` (the motion field into each frame) and ``<stem>_flow.mp4``.
    The frames are only read: a failed encode leaves them, and any older video, as they were.
    ``metadata`` becomes container tags of the MP4 and WebM (the run manifest).
    """
    job = job_for(run)
    frames = [job.paths.frame_png(i) for i in range(1, run.frame_count + 1)]
    outputs = VideoOutputs.from_scene(job.scene)
    video = job.paths.video(run.video_stem)
    written = assemble_outputs(frames, video, outputs, metadata=metadata)
    device = torch.device(run.device)
    settings = replace(outputs.settings, interpolate_to=None)
    if "depth" in job.scene.export:
        depth = export_depth_maps(
            frames, job.paths.root / "depth", depth_provider_for(job.scene, device), device=device
        )
        written.append(
            assemble_video(outputs.sequence(depth), video.with_name(f"{video.stem}_depth.mp4"), settings)
        )
    if "flow" in job.scene.export:
        runtime = flow_runtime(job.scene, device, flow_dir=flows_dir(job.paths))
        plan_frames = job.plan.frames[: len(frames)]
        flow = export_flow_maps(
            frames, job.paths.root / "flow", plan_frames, job.scene.animation, runtime, device=device
        )
        written.append(
            assemble_video(outputs.sequence(flow), video.with_name(f"{video.stem}_flow.mp4"), settings)
        )
    logger = get_run_logger()
    for path in written:
        logger.info("video: %s", path)
    logger.info(
        "%d frames at %g fps%s%s",
        len(frames),
        outputs.settings.fps,
        f", interpolated to {outputs.settings.interpolate_to:g} fps"
        if outputs.settings.interpolate_to
        else "",
        f", sound from {outputs.audio.path.name}" if outputs.audio else "",
    )
    return str(Path(written[0]))
