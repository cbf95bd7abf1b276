"""Flow: render one scene into its run directory and assemble the video.

No ``from __future__ import annotations`` here: served runs would then fail to validate the
pydantic parameters (PrefectHQ/prefect#19447).
"""

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from flows.params import RenderParams, render_run_name, resolve_scene, write_inline_scene
from flows.pipes import keep_output_alive
from flows.progress import run_log
from pytti_engine.identity import RunIdentity, check_owner, forget_previous_render
from pytti_engine.rundir import RunLock, RunPaths, remove_stale_temp_files
from tasks.audio import prepare_media_task
from tasks.precompute import flow_chunks, source_flows_task
from tasks.publish import (
    ProgressPublisher,
    figure,
    publish_plan_curves,
    publish_summary,
    start_progress,
    write_manifest_task,
)
from tasks.records import FrameRecord, RenderSummary, RunRef
from tasks.render import render_frame_task, results_dir
from tasks.resident import handing_over_states, job_for
from tasks.scene import prepare_run
from tasks.video import assemble_video_task


@flow(name="render-scene", flow_run_name=render_run_name)
def render_scene(params: RenderParams) -> RenderSummary:
    """Validate → lock the run directory → plan → frame 1 … frame N (each from the previous
    checkpoint) → assemble.

    Nothing is written into the run directory before its lock is held and it is known to hold no
    other render (or ``replace`` hands it over): a refused render leaves it exactly as it was.
    """
    start = time.perf_counter()
    keep_output_alive()  # a restarted worker (its log pipe closed) must not kill this render
    source = resolve_scene(params)  # paths confined, default folder, inline text validated; no writes
    paths = RunPaths(Path(source.out_dir))
    records: list[FrameRecord] = []
    header = f"render {flow_run.name or ''} ({flow_run.id}): {source.scene_path} {' '.join(source.overrides)}"
    # one render per directory, and only its own: nothing is written before both are checked
    with claimed_run_dir(paths, source.identity, params.replace) as previous, run_log(paths.root, header):
        if previous is not None:
            get_run_logger().warning(
                "replacing the render of %s in %s (removed %s)",
                previous[0].describe(),
                paths.root,
                ", ".join(previous[1]) or "no outputs",
            )
        write_inline_scene(source)
        remove_stale_temp_files(paths)
        prepare_media_task(source.scene_path, source.overrides)  # encoders + audio bands, once (issue 7)
        run = prepare_run(
            source.scene_path, source.out_dir, params.device, source.overrides, foreign=previous is not None
        )
        if job_for(run).scene.animation == "video":  # source-video flows: parallel, ahead of the chain
            for future in [source_flows_task.submit(run, a, b) for a, b in flow_chunks(run.frame_count, 2)]:
                future.result()
        frame_task = render_frame_task.with_options(
            result_storage=results_dir(run), timeout_seconds=params.frame_timeout_s
        )
        publish_plan_curves(run)
        progress = start_progress(run)  # the latest-frame view: the newest card, listed first
        every = max(1, run.frame_count // 8)
        prev = None
        # the progress bar and the latest-frame view are sent from a thread: no frame waits for the API
        with ProgressPublisher(run, progress, every) as publisher, handing_over_states(run):
            for index in range(1, run.frame_count + 1):
                state = frame_task(run, index, prev, return_state=True)
                prev = state.result()  # raises the frame's error: the flow fails at this frame
                if state.name == "Cached" and not prev.skipped:
                    prev = prev.model_copy(update={"skipped": True})
                records.append(prev)
                publisher.frame_done(prev)
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


@contextmanager
def claimed_run_dir(
    paths: RunPaths, identity: RunIdentity, replace: bool
) -> Iterator[tuple[RunIdentity, list[str]] | None]:
    """Hold the run lock of ``paths`` and make sure the directory is this render's.

    Yields:
        ``None``, or, when ``replace`` took the directory over from another render, that render's
        identity and the names of its outputs that were removed.

    Raises:
        OutputError: another process is rendering into the directory, or it holds another render and
            ``replace`` is false. Nothing has been written then.
    """
    with RunLock(paths.root, note=f"render {identity.digest[:12]}"):
        previous = check_owner(paths.root, identity, replace=replace)
        yield None if previous is None else (previous, forget_previous_render(paths, previous))


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
