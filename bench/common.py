"""Shared set-up of the flow benchmarks: environment, a small 2D scene on the stand-in perceptor."""

import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

SCENE = """\
width: 128
height: 128
fps: 12
seed: 1
steps_per_frame: {steps}
perceptors: [{{model: "local-dir:{model}"}}]
cutouts: 16
animation: 2d
translate_x: 1
zoom: 1.01
scenes:
  - prompts: "a lighthouse in a storm:1 | text:-0.5:-0.9"
    frames: {frames}
"""


def write_bench_scene(root: Path, *, steps: int, frames: int) -> Path:
    """A stand-in perceptor under ``root`` and a scene using it; returns the scene file."""
    from pytti_engine.perceptors import write_stand_in

    scene = root / "bench.yaml"
    scene.write_text(SCENE.format(steps=steps, frames=frames, model=write_stand_in(root / "clip")))
    return scene
