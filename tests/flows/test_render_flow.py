"""End to end through Prefect: scene file -> per-frame tasks -> MP4 (temporary Prefect backend)."""

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from flows.render_scene import RenderParams, render_scene
from pytti_engine.video import probe_video

MOVING = """\
animation: 2d
translate_x: 2
rotate_2d: "5 * t"
"""


def test_flow_renders_frames_checkpoints_and_video(write_scene: Callable[..., Path], tmp_path: Path) -> None:
    scene = write_scene(MOVING, frames=3)
    out = tmp_path / "run"
    summary = render_scene(RenderParams(scene_path=str(scene), out_dir=str(out), device="cpu"))

    assert (summary.frames, summary.rendered, summary.skipped) == (3, 3, 0)
    assert sorted(p.name for p in (out / "frames").iterdir()) == ["000001.png", "000002.png", "000003.png"]
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["000001.pt", "000002.pt", "000003.pt"]
    assert (out / "scene.yaml").read_text() == scene.read_text()
    plan = json.loads((out / "plan.json").read_text())
    assert len(plan["frames"]) == 3 and len(plan["keys"]) == 3

    video = Path(summary.video)
    assert video == out / "scene.mp4"
    info = probe_video(video)
    assert (info.frames, info.width, info.height) == (3, 32, 32)
    assert abs(info.fps - 12) < 1e-6
    assert abs(info.duration - 3 / 12) < 0.05
    assert info.codec == "h264" and info.pix_fmt == "yuv420p"


def test_rerender_into_a_done_run_keeps_every_frame(write_scene: Callable[..., Path], tmp_path: Path) -> None:
    scene = write_scene(MOVING, frames=2)
    out = tmp_path / "run"
    params = RenderParams(scene_path=str(scene), out_dir=str(out), device="cpu")
    render_scene(params)
    before = {p.name: p.read_bytes() for p in (out / "frames").iterdir()}
    again = render_scene(params)
    assert (again.rendered, again.skipped) == (0, 2)
    assert {p.name: p.read_bytes() for p in (out / "frames").iterdir()} == before


def test_flow_works_with_the_imageio_ffmpeg_binary_alone(
    write_scene: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The wheel's static ffmpeg (no ffprobe beside it) must be enough, even where a system ffmpeg exists."""
    import imageio_ffmpeg

    monkeypatch.setenv("FFMPEG_BINARY", imageio_ffmpeg.get_ffmpeg_exe())
    summary = render_scene(
        RenderParams(scene_path=str(write_scene(frames=2)), out_dir=str(tmp_path / "r"), device="cpu")
    )
    info = probe_video(Path(summary.video), backend="ffmpeg")
    assert (info.frames, info.width, info.height, info.fps) == (2, 32, 32, 12.0)


def test_video_source_flows_are_precomputed_ahead_of_the_chain(
    write_scene: Callable[..., Path], tmp_path: Path
) -> None:
    import numpy as np
    import torch
    from PIL import Image

    from pytti_engine.job import build_context
    from pytti_engine.render import render_frames
    from pytti_engine.scene import build_plan, load_scene
    from pytti_engine.video import EncodeSettings, assemble_video

    frames = []
    for k in range(6):
        arr = np.zeros((32, 32, 3), np.uint8)
        arr[8:20, 4 + 2 * k : 16 + 2 * k] = (250, 200, 40)
        frames.append(tmp_path / f"src{k}.png")
        Image.fromarray(arr).save(frames[-1])
    source = assemble_video(frames, tmp_path / "source.mp4", EncodeSettings(fps=12, crf=0, pix_fmt="yuv444p"))
    scene = write_scene(f"animation: video\nvideo_path: {source}\n", frames=4)
    out = tmp_path / "run"
    summary = render_scene(RenderParams(scene_path=str(scene), out_dir=str(out), device="cpu"))
    assert summary.rendered == 4
    assert len(list((out / "flows").iterdir())) == 3, "flows into frames 2-4 are computed before the chain"

    loaded = load_scene(scene)
    plan = build_plan(loaded)
    on_the_fly: list[bytes] = []
    from pytti_engine.io import png_bytes

    render_frames(
        plan.frames,
        build_context(loaded, plan, torch.device("cpu")),
        on_frame=lambda r: on_the_fly.append(png_bytes(r.image)),
    )
    assert on_the_fly == [p.read_bytes() for p in sorted((out / "frames").glob("*.png"))]
