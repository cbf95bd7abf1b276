"""Every example scene in scenes/ loads, and its first frames render (tiny stand-in perceptor, 32²)."""

from pathlib import Path

import pytest
import torch

from pytti_engine.job import build_context
from pytti_engine.render import FrameResult, render_frames
from pytti_engine.scene import build_plan, load_scene

SCENES = sorted((Path(__file__).resolve().parent.parent / "scenes").glob("*.yaml"))


def test_there_are_example_scenes() -> None:
    assert any(p.name == "demo.yaml" for p in SCENES)


@pytest.mark.parametrize("path", SCENES, ids=lambda p: p.name)
def test_scene_loads_and_renders(path: Path, stand_in_dir: Path) -> None:
    plan = build_plan(load_scene(path))
    assert plan.frames, "a scene must have frames"
    small = load_scene(
        path,
        [
            "width=32",
            "height=32",
            "steps_per_frame=1",
            "cutouts=1",
            f"perceptors=[{{model: 'local-dir:{stand_in_dir}'}}]",
        ],
    )
    small_plan = build_plan(small)
    results, frames = [], []

    def collect(result: FrameResult) -> None:
        results.append(result)
        frames.append(result.state.frame)

    ctx = build_context(small, small_plan, torch.device("cpu"))
    render_frames(small_plan.frames[:2], ctx, on_frame=collect)
    assert frames == [1, 2]
    assert all(r.image.shape == (1, 3, 32, 32) and torch.isfinite(r.image).all() for r in results)
