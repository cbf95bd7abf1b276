"""A state saves to the same checkpoint bytes whether it was kept in memory or read back from disk."""

from collections.abc import Callable
from pathlib import Path

import torch

from pytti_engine.checkpoints import CheckpointMeta, checkpoint_bytes, load_checkpoint, save_checkpoint
from pytti_engine.job import build_context
from pytti_engine.render import render_frames
from pytti_engine.scene import build_plan, load_scene


def test_a_restored_state_saves_to_the_bytes_of_the_state_in_memory(
    write_scene: Callable[..., Path], tmp_path: Path, torch_one_thread: None
) -> None:
    scene = load_scene(write_scene("animation: 2d\ntranslate_x: 1\n", frames=2, size=16, steps=2))
    plan = build_plan(scene)
    ctx = build_context(scene, plan, torch.device("cpu"))
    state = render_frames(plan.frames, ctx)
    assert state is not None
    meta = CheckpointMeta(frame=2, step=state.step, key="k2", png_sha256="p2")
    save_checkpoint(tmp_path / "2.pt", state, meta)
    restored, _ = load_checkpoint(
        tmp_path / "2.pt", learning_rate=ctx.settings.learning_rate, device=torch.device("cpu")
    )
    # "step" is both a payload key and an Adam state key: pickled as a back-reference only when it is
    # the same string object, as it is in memory
    assert checkpoint_bytes(restored, meta) == checkpoint_bytes(state, meta)
