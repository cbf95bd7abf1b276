"""``pytti preview``: motion alone, exactly as a render moves the image (stand-in perceptor, 32², CPU)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from flows.cli import main
from pytti_engine.io import load_image, png_bytes
from pytti_engine.job import build_context
from pytti_engine.motion import frame_motion
from pytti_engine.preview import PATTERN_NAME, pattern_image, preview_frames, write_preview
from pytti_engine.render import FrameResult, render_frames
from pytti_engine.scene import build_plan, load_scene
from pytti_engine.warps import warp_2d

MOTION_2D = """\
animation: 2d
translate_x: "2 * sin(t * 3)"
translate_y: -1
rotate_2d: 3
zoom: 1.04
zoom_x: "1 + 0.02 * t"
infill_mode: mirror
init_image: init.png
"""


def _init_png(folder: Path, size: int = 32) -> Path:
    path = folder / "init.png"
    Image.fromarray((pattern_image(size, size)[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8)).save(path)
    return path


def _collect(target: list[bytes]) -> Callable[[FrameResult], None]:
    return lambda r: target.append(png_bytes(r.image))


def test_preview_of_a_2d_scene_is_the_composition_of_its_warps(
    write_scene: Callable[..., Path], tmp_path: Path
) -> None:
    _init_png(tmp_path)
    scene = load_scene(write_scene(MOTION_2D, frames=5))
    plan = build_plan(scene)
    images: list[torch.Tensor] = []
    preview_frames(scene, plan, torch.device("cpu"), lambda r: images.append(r.image))
    expected = load_image(tmp_path / "init.png", (32, 32))
    assert len(images) == 5
    for frame, image in zip(plan.frames, images, strict=True):
        if frame.index > 1:
            expected = warp_2d(expected, frame_motion(frame), infill="mirror", sampling="bilinear").clamp(
                0, 1
            )
        torch.testing.assert_close(image, expected, atol=1e-6, rtol=0)
    assert (images[-1] - images[0]).abs().mean() > 0.01  # it moved


def test_steps_per_frame_0_renders_the_same_frames_as_the_preview(
    write_scene: Callable[..., Path], tmp_path: Path
) -> None:
    _init_png(tmp_path)
    scene = load_scene(write_scene(MOTION_2D, frames=4, steps=0))
    plan = build_plan(scene)
    rendered: list[bytes] = []
    render_frames(plan.frames, build_context(scene, plan, torch.device("cpu")), on_frame=_collect(rendered))
    previewed: list[bytes] = []
    preview_frames(scene, plan, torch.device("cpu"), _collect(previewed))
    assert rendered == previewed and len(set(rendered)) == 4


def test_3d_flat_preview_matches_a_steps_0_render(write_scene: Callable[..., Path], tmp_path: Path) -> None:
    _init_png(tmp_path)
    body = (
        "animation: 3d\ndepth_model: flat\ntranslate_z: 3\nrotate_3d: [0, 1, 2]\ninit_image: init.png\n"
        "lock_camera: false\n"
    )
    scene = load_scene(write_scene(body, frames=3, steps=0))
    plan = build_plan(scene)
    rendered: list[bytes] = []
    render_frames(plan.frames, build_context(scene, plan, torch.device("cpu")), on_frame=_collect(rendered))
    previewed: list[bytes] = []
    preview_frames(scene, plan, torch.device("cpu"), _collect(previewed))
    assert rendered == previewed and len(set(rendered)) == 3


def test_write_preview_without_init_image_uses_the_test_pattern(
    write_scene: Callable[..., Path], tmp_path: Path
) -> None:
    scene = load_scene(write_scene("animation: 2d\nrotate_2d: 5\n", frames=3))
    out = tmp_path / "preview"
    result = write_preview(scene, build_plan(scene), out, video=False)
    assert [p.name for p in result.frames] == ["000001.png", "000002.png", "000003.png"]
    assert result.video is None and (out / PATTERN_NAME).is_file()
    first = np.asarray(Image.open(result.frames[0]))
    assert first.shape == (32, 32, 3)
    assert np.array_equal(first, np.asarray(Image.open(out / PATTERN_NAME)))


def test_cli_preview_writes_frames_and_mp4(write_scene: Callable[..., Path], tmp_path: Path) -> None:
    scene = write_scene("animation: 2d\ntranslate_x: 2\n", frames=4)
    out = tmp_path / "out"
    assert main(["preview", str(scene), "--out", str(out), "--frames", "3"]) == 0
    assert sorted(p.name for p in (out / "frames").iterdir()) == ["000001.png", "000002.png", "000003.png"]
    assert (out / "preview.mp4").stat().st_size > 0


def test_cli_preview_bad_scene_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("animation: 3d\nscenes:\n  - prompts: a\n    frames: 2\n")
    assert main(["preview", str(bad), "--out", str(tmp_path / "o")]) == 2


def test_video_preview_starts_from_the_source_like_a_render(
    write_scene: Callable[..., Path], tmp_path: Path
) -> None:
    frames = []
    for k in range(3):
        path = tmp_path / f"{k}.png"
        Image.fromarray((pattern_image(32, 32)[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8)).rotate(
            5 * k
        ).save(path)
        frames.append(path)
    from pytti_engine.video import EncodeSettings, assemble_video

    video = assemble_video(frames, tmp_path / "v.mp4", EncodeSettings(fps=12, crf=0, preset="ultrafast"))
    scene = load_scene(write_scene(f"animation: video\nvideo_path: {video}\n", frames=3, steps=0))
    plan = build_plan(scene)
    result = write_preview(scene, plan, tmp_path / "out", video=False)
    rendered: list[bytes] = []
    render_frames(plan.frames, build_context(scene, plan, torch.device("cpu")), on_frame=_collect(rendered))
    assert [p.read_bytes() for p in result.frames] == rendered
    assert not (tmp_path / "out" / PATTERN_NAME).exists()
