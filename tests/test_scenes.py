"""Every example scene in scenes/ loads and its first frames render and move toward its prompts (tiny
stand-in perceptor, 32²); the offline demo follows its prompts (the trained toy perceptor)."""

import dataclasses
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from pytti_engine.job import build_context
from pytti_engine.perceptors import Perceptor
from pytti_engine.render import FrameResult, render_frames
from pytti_engine.scene import build_plan, load_scene

SCENES_DIR = Path(__file__).resolve().parent.parent / "scenes"
SCENES = sorted(SCENES_DIR.glob("*.yaml"))
Loader = Callable[[str, str | None, torch.device, bool | None], Perceptor]


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
    # the step ran: the same frames rendered without optimizer steps (the motion alone) differ
    unguided = dataclasses.replace(ctx, settings=dataclasses.replace(ctx.settings, steps_per_frame=0))
    still: list[FrameResult] = []
    render_frames(small_plan.frames[:2], unguided, on_frame=still.append)
    assert not torch.equal(still[-1].image, results[-1].image)


@pytest.mark.usefixtures("torch_one_thread")
def test_the_offline_demo_follows_its_prompts(toy_dir: Path, load_cached: Loader) -> None:
    """What ``pytti demo`` renders without CLIP weights (the toy perceptor, prompts it knows), at 64²
    and 4 frames per scene: red in the first scene, then yellow."""
    from flows.cli import TOY_DEMO_PROMPTS
    from tests.toy_support import colour_scores, redness

    overrides = [f"perceptors=[{{model: 'local-dir:{toy_dir}'}}]", "width=64", "height=64"]
    for i, prompts in enumerate(TOY_DEMO_PROMPTS):
        overrides += [f"scenes.{i}.prompts={prompts}", f"scenes.{i}.frames=4"]
    scene = load_scene(SCENES_DIR / "demo.yaml", overrides)
    plan = build_plan(scene)
    ctx = build_context(scene, plan, torch.device("cpu"), load=load_cached)
    pictures: list[torch.Tensor] = []
    render_frames(plan.frames, ctx, on_frame=lambda r: pictures.append(r.image.clone()))
    toy = ctx.perceptors[0]
    first, last = colour_scores(toy, pictures[3]), colour_scores(toy, pictures[-1])
    assert max(first, key=first.__getitem__) == "red" and redness(pictures[3]) > 0.1
    assert max(last, key=last.__getitem__) == "yellow" and last["yellow"] > first["yellow"] + 0.2
