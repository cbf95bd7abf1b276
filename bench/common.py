"""Shared set-up of the flow benchmarks: environment, a small 2D scene on the stand-in perceptor."""

import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

SCENE = """\
width: {size}
height: {size}
fps: 12
seed: 1
steps_per_frame: {steps}
perceptors: [{{model: "local-dir:{model}"}}]
cutouts: {cutouts}
animation: 2d
translate_x: 1
zoom: 1.01
scenes:
  - prompts: "a lighthouse in a storm:1 | text:-0.5:-0.9"
    frames: {frames}
"""


def write_bench_scene(
    root: Path,
    *,
    steps: int,
    frames: int,
    size: int = 128,
    cutouts: int = 16,
    model: Path | None = None,
    name: str = "bench",
) -> Path:
    """A scene ``<name>.yaml`` guided by the local-dir perceptor ``model`` (default: a stand-in written
    under ``root``); returns the scene file."""
    from pytti_engine.perceptors import write_stand_in

    scene = root / f"{name}.yaml"
    model = model or write_stand_in(root / "clip")
    scene.write_text(SCENE.format(steps=steps, frames=frames, size=size, cutouts=cutouts, model=model))
    return scene
