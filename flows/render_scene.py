"""Flow: render one scene into its run directory and assemble the video.

No ``from __future__ import annotations`` here: served runs would then fail to validate the
pydantic parameters (PrefectHQ/prefect#19447).
"""

import time

from prefect import flow
from pydantic import BaseModel, Field

from tasks.records import RenderSummary
from tasks.render import render_frame_task
from tasks.scene import prepare_run
from tasks.video import assemble_video_task


class RenderParams(BaseModel):
    """Parameters of one render (the Prefect UI shows them as a form)."""

    scene_path: str = Field(description="Path to the YAML scene file")
    out_dir: str | None = Field(default=None, description="Run directory (default: renders/<scene stem>)")
    device: str = Field(
        default="auto", pattern=r"^(auto|cpu|cuda(:\d+)?|mps)$", description="auto, cpu or cuda:N"
    )
    overrides: list[str] = Field(default_factory=list, description="Scene overrides, KEY=VALUE (as --set)")


@flow(name="render-scene", flow_run_name="render-{params.scene_path}")
def render_scene(params: RenderParams) -> RenderSummary:
    """Validate → plan → frame 1 … frame N (each from the previous checkpoint) → assemble."""
    start = time.perf_counter()
    run = prepare_run(params.scene_path, params.out_dir, params.device, tuple(params.overrides))
    prev = None
    rendered = skipped = 0
    for index in range(1, run.frame_count + 1):
        prev = render_frame_task(run, index, prev)
        skipped += prev.skipped
        rendered += not prev.skipped
    video = assemble_video_task(run, wait_for=[prev] if prev else None)
    return RenderSummary(
        run_dir=run.run_dir,
        video=video,
        frames=run.frame_count,
        rendered=rendered,
        skipped=skipped,
        seconds=time.perf_counter() - start,
    )
