"""The GPU tier: ``pytti render --device cuda`` killed (-9) mid-render, then ``pytti resume``: every frame
within the stated tolerance of an uninterrupted CUDA render (``support.MAX_LEVELS``/``MEAN_LEVELS``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from flows.render_scene import RenderParams, render_scene
from tests.flows.test_kill_resume import _pytti, kill_after_frame
from tests.gpu.support import GPU_TIER, assert_within_tolerance

pytestmark = GPU_TIER

FRAMES = 16


def _frames(run: Path) -> list[np.ndarray]:
    return [np.asarray(Image.open(p).convert("RGB")) for p in sorted((run / "frames").glob("*.png"))]


def test_kill_minus_9_on_cuda_then_resume(write_scene: Callable[..., Path], tmp_path: Path) -> None:
    scene = write_scene(
        'animation: 2d\ntranslate_x: 1.5\nrotate_2d: "2 * t"\nzoom: 1.03\n', size=64, frames=FRAMES, steps=12
    )
    reference = tmp_path / "reference"
    render_scene(RenderParams(scene_path=str(scene), out_dir=str(reference), device="cuda"))

    run = tmp_path / "run"
    proc = _pytti("render", str(scene), "--out", str(run), "--device", "cuda", home=tmp_path / "home")
    done_at_kill = kill_after_frame(proc, run, 4)
    assert 4 <= done_at_kill < FRAMES, f"the kill should land mid-render, {done_at_kill} frames were done"

    resume = _pytti("resume", str(run), home=tmp_path / "home")
    out, _ = resume.communicate(timeout=300)
    assert resume.returncode == 0, out.decode()
    assert f"({FRAMES - done_at_kill} rendered, {done_at_kill} kept)" in out.decode()
    assert_within_tolerance(_frames(reference), _frames(run), "CUDA kill -9 and resume")
