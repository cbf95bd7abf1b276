"""Flow: render one scene into its run directory and assemble the video.

No ``from __future__ import annotations`` here: served runs would then fail to validate the
pydantic parameters (PrefectHQ/prefect#19447).
"""

import time
from pathlib import Path

from prefect import flow
from prefect.runtime import flow_run

from flows.params import RenderParams, render_run_name, resolve_scene
from flows.progress import run_log
from pytti_engine.rundir import RunLock, RunPaths, remove_stale_temp_files
from tasks.audio import prepare_media_task
from tasks.precompute import flow_chunks, source_flows_task
from tasks.publish import (
    figure,
    frame_done_update,
    publish_plan_curves,
    publish_summary,
    start_progress,
    write_manifest_task,
)
from tasks.records import FrameRecord, RenderSummary, RunRef
from tasks.render import render_frame_task, results_dir
from tasks.resident import job_for
from tasks.scene import prepare_run
from tasks.video import assemble_video_task


@flow(name="render-scene", flow_run_name=render_run_name)
def render_scene(params: RenderParams) -> RenderSummary:
    """Validate → plan → frame 1 … frame N (each from the previous checkpoint) → assemble."""
    start = time.perf_counter()
    source = resolve_scene(params)  # inline scene text: validated (file:line errors), then written out
    prepare_media_task(source.scene_path, source.overrides)  # encoders + audio bands, once (issue 7)
    run = prepare_run(source.scene_path, source.out_dir, params.device, source.overrides)
    if job_for(run).scene.animation == "video":  # source-video flows: parallel, ahead of the chain
        for future in [source_flows_task.submit(run, a, b) for a, b in flow_chunks(run.frame_count, 2)]:
            future.result()
    frame_task = render_frame_task.with_options(
        result_storage=results_dir(run), timeout_seconds=params.frame_timeout_s
    )
    records: list[FrameRecord] = []
    header = f"render {flow_run.name or ''} ({flow_run.id}): {run.scene_path} {' '.join(run.overrides)}"
    with RunLock(Path(run.run_dir)), run_log(Path(run.run_dir), header):  # refuses a second render
        remove_stale_temp_files(RunPaths(Path(run.run_dir)))
        publish_plan_curves(run)
        progress = start_progress(run)  # the latest-frame view: the newest card, listed first
        every = max(1, run.frame_count // 8)
        prev = None
        for index in range(1, run.frame_count + 1):
            state = frame_task(run, index, prev, return_state=True)
            prev = state.result()  # raises the frame's error: the flow fails at this frame
            if state.name == "Cached" and not prev.skipped:
                prev = prev.model_copy(update={"skipped": True})
            records.append(prev)
            frame_done_update(run, progress, prev, every)
        metadata = write_manifest_task(run)
        video = assemble_video_task(run, metadata=metadata)
    publish_summary(run, records, video, plan_rows(run))
    kept = sum(r.skipped for r in records)
    return RenderSummary(
        run_dir=run.run_dir,
        video=video,
        frames=run.frame_count,
        rendered=len(records) - kept,
        skipped=kept,
        seconds=time.perf_counter() - start,
    )


def plan_rows(run: RunRef, limit: int = 200) -> list[dict[str, object]]:
    """At most ``limit`` evenly spaced rows of the plan, for the UI."""
    frames = job_for(run).plan.frames
    step = max(1, -(-len(frames) // limit))
    rows: list[dict[str, object]] = []
    for f in frames[::step]:
        row: dict[str, object] = {
            k: v if isinstance(v, int) else figure(v)
            for k, v in f.to_dict().items()
            if isinstance(v, int | float)
        }
        row["prompts"] = " | ".join(f"{p.text}:{figure(p.weight):g}" for p in f.prompts)
        rows.append(row)
    return rows
