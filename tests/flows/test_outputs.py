"""Outputs through the Prefect flow: audio-reactive plan, sound in the MP4, GIF/WebM, interpolation."""

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from flows.render_scene import RenderParams, render_scene
from pytti_engine.audio import decode_audio
from pytti_engine.video import ffmpeg_exe, probe_video
from tasks.audio import prepare_media_task

SCENE = """\
animation: 2d
input_audio: beat.wav
input_audio_filters: [{name: a4, f_center: 440, f_width: 80}]
translate_x: "4 * a4"
output: {gif: true, webm: true, interpolate_to: 24, boomerang: true}
"""


def write_beat(path: Path, rate: int = 8000) -> Path:
    """0.25 s of silence, then a 440 Hz tone (numpy samples encoded by ffmpeg)."""
    t = np.arange(rate) / rate
    samples = np.where(t >= 0.25, 0.4 * np.sin(2 * np.pi * 440 * t), 0.0).astype("<f4")
    args = [ffmpeg_exe(), "-y", "-loglevel", "error", "-f", "f32le", "-ar", str(rate), "-ac", "1", "-i", "-"]
    subprocess.run([*args, str(path)], input=samples.tobytes(), check=True)
    return path


def test_audio_reactive_render_with_every_output(
    write_scene: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTTI_CACHE_DIR", str(tmp_path / "cache"))
    write_beat(tmp_path / "beat.wav")
    scene = write_scene(SCENE, frames=4, steps=1)
    out = tmp_path / "run"
    summary = render_scene(RenderParams(scene_path=str(scene), out_dir=str(out), device="cpu"))

    plan = json.loads((out / "plan.json").read_text())
    a4 = [f["bands"]["a4"] for f in plan["frames"]]
    assert a4[:3] == [0.0, 0.0, 0.0] and min(a4[3:]) > 0.5  # t = 0.25 s is frame 4 at 12 fps
    assert [f["translate_x"] for f in plan["frames"]] == pytest.approx([4 * v for v in a4])

    video = Path(summary.video)
    boomerang = 4 + 2
    info = probe_video(video)
    assert abs(info.frames - 2 * boomerang) <= 2 and info.fps == pytest.approx(24)
    samples, rate = decode_audio(video)
    assert len(samples) / rate == pytest.approx(boomerang / 12, abs=1 / 12)
    assert probe_video(video.with_suffix(".gif")).frames == boomerang
    assert abs(probe_video(video.with_suffix(".webm")).frames - 2 * boomerang) <= 2
    assert len(list((out / "frames").iterdir())) == 4


def test_prepare_media_analyses_once_and_checks_encoders(
    write_scene: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTTI_CACHE_DIR", str(tmp_path / "cache"))
    write_beat(tmp_path / "beat.wav")
    scene = write_scene(SCENE, frames=6)
    first = prepare_media_task(str(scene))
    again = prepare_media_task(str(scene))
    assert (first.reused, again.reused) == (False, True) and first.audio_key == again.audio_key
    assert first.bands == ("a4",) and first.frames == 12
    assert Path(first.bands_path or "").is_file()


def test_depth_maps_are_exported_beside_the_frames(write_scene: Callable[..., Path], tmp_path: Path) -> None:
    from pytti_engine.depth import write_tiny_depth_model

    model = write_tiny_depth_model(tmp_path / "depth-model")
    scene = write_scene(f"depth_model: '{model}'\nexport: [depth]\n", frames=3, steps=1)
    out = tmp_path / "run"
    summary = render_scene(RenderParams(scene_path=str(scene), out_dir=str(out), device="cpu"))
    depth = sorted(p.name for p in (out / "depth").iterdir())
    assert depth == ["000001.png", "000002.png", "000003.png"]
    # The depth scale is fixed on the first frame (a stable scale, not min-max per frame): frame 1's
    # nearest pixel is white and its farthest black; later frames use the same mapping, so their
    # extremes stay inside that range without being stretched to it.
    with Image.open(out / "depth" / "000001.png") as image:
        assert (image.mode, image.size) == ("L", (32, 32))
        assert image.getextrema() == (0, 255)
    for name in ("000002.png", "000003.png"):
        with Image.open(out / "depth" / name) as image:
            assert (image.mode, image.size) == ("L", (32, 32))
            low, high = image.getextrema()
            assert 0 <= low < high <= 255
    info = probe_video(Path(summary.video).with_name("scene_depth.mp4"))
    assert (info.frames, info.width) == (3, 32)


def test_flow_fields_are_exported_beside_the_frames(write_scene: Callable[..., Path], tmp_path: Path) -> None:
    from pytti_engine.exports import rgb_to_flow

    scene = write_scene("animation: 2d\ntranslate_x: 2\nexport: [flow]\n", frames=3, steps=1)
    out = tmp_path / "run"
    summary = render_scene(RenderParams(scene_path=str(scene), out_dir=str(out), device="cpu"))
    assert sorted(p.name for p in (out / "flow").glob("*.png")) == ["000001.png", "000002.png", "000003.png"]
    scale = json.loads((out / "flow" / "flow.json").read_text())["max_magnitude_px"]
    assert scale == pytest.approx(2.0, abs=1e-3)
    for name, expected in (("000001.png", (0.0, 0.0)), ("000003.png", (2.0, 0.0))):
        with Image.open(out / "flow" / name) as image:
            assert (image.mode, image.size) == ("RGB", (32, 32))
            rgb = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255).permute(2, 0, 1)[None]
        flow = rgb_to_flow(rgb, scale)
        torch.testing.assert_close(flow[0, :, 16, 16], torch.tensor(expected), atol=0.05, rtol=0)
    info = probe_video(Path(summary.video).with_name("scene_flow.mp4"))
    assert (info.frames, info.width) == (3, 32)


def _decoded_flow(path: Path, scale: float) -> torch.Tensor:
    from pytti_engine.exports import rgb_to_flow

    with Image.open(path) as image:
        rgb = torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.float32) / 255).permute(2, 0, 1)
    return rgb_to_flow(rgb[None], scale)


def test_video_and_3d_flow_exports_follow_their_motion(
    write_scene: Callable[..., Path], tmp_path: Path
) -> None:
    from pytti_engine.video import EncodeSettings, assemble_video

    frames = []
    for k in range(4):
        arr = np.zeros((32, 32, 3), np.uint8)
        arr[8:20, 4 + 2 * k : 16 + 2 * k] = (250, 200, 40)
        frames.append(tmp_path / f"src{k}.png")
        Image.fromarray(arr).save(frames[-1])
    source = assemble_video(frames, tmp_path / "source.mp4", EncodeSettings(fps=12, crf=0, pix_fmt="yuv444p"))
    scene = write_scene(f"animation: video\nvideo_path: {source}\nexport: [flow]\n", frames=3, steps=1)
    out = tmp_path / "video"
    summary = render_scene(RenderParams(scene_path=str(scene), out_dir=str(out), device="cpu"))
    scale = json.loads((out / "flow" / "flow.json").read_text())["max_magnitude_px"]
    precomputed = torch.load(out / "flows" / "flow_000003.pt", weights_only=True)["backward"]
    assert scale > 0.5
    error = (_decoded_flow(out / "flow" / "000003.png", scale) + precomputed).abs()
    assert float(error.max()) < 0.05 * scale + 0.05
    assert probe_video(Path(summary.video).with_name("scene_flow.mp4")).frames == 3

    body = "animation: 3d\ndepth_model: flat\nlock_camera: false\nrotate_3d: [0, 0, 10]\nexport: [flow]\n"
    scene = write_scene(body, name="turn.yaml", frames=2, steps=1)
    out = tmp_path / "turn"
    summary = render_scene(RenderParams(scene_path=str(scene), out_dir=str(out), device="cpu"))
    scale = json.loads((out / "flow" / "flow.json").read_text())["max_magnitude_px"]
    flow = _decoded_flow(out / "flow" / "000002.png", scale)
    assert float(flow[0, :, 15:17, 15:17].abs().max()) < 0.1 * scale  # a turn about the centre
    assert probe_video(Path(summary.video).with_name("turn_flow.mp4")).frames == 2


def test_tensorboard_event_files_in_the_run_directory(
    write_scene: Callable[..., Path], tmp_path: Path
) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    scene = write_scene("tensorboard: true\ntensorboard_image_every: 2\n", frames=3, steps=2)
    out = tmp_path / "run"
    render_scene(RenderParams(scene_path=str(scene), out_dir=str(out), device="cpu"))
    events = EventAccumulator(str(out / "tensorboard"), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    assert [s.step for s in events.Scalars("loss/total")] == [1, 2, 3, 4, 5, 6]
    tags = set(events.Tags()["scalars"])
    assert {"loss/prompt/a red circle", "loss/prompt/noise", "loss/smoothing", "learning_rate"} <= tags
    assert [round(s.value, 6) for s in events.Scalars("learning_rate")] == [0.02] * 6
    assert [i.step for i in events.Images("image")] == [2, 4]
    assert len(events.Scalars("time/frame_seconds")) == 3
