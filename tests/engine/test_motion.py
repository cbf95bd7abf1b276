"""Motion at frame boundaries (pytti_engine.motion): 3D with depth, video source with flow, validation."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pytti_engine.depth import write_tiny_depth_model
from pytti_engine.errors import SceneError
from pytti_engine.image_params import RGBImage
from pytti_engine.io import png_bytes
from pytti_engine.job import build_context, plan_keys
from pytti_engine.motion import MotionRuntime, apply_motion, frame_motion_3d, grid_3d, motion_fingerprint
from pytti_engine.preview import preview_frames
from pytti_engine.render import FrameResult, render_frames
from pytti_engine.scene import build_plan, load_scene
from pytti_engine.state import RenderState, make_optimizer, optimizer_state_tensors
from pytti_engine.video import EncodeSettings, assemble_video
from pytti_engine.video_source import (
    VideoSource,
    decode_source,
    flow_file,
    precompute_flows,
    source_index,
)
from pytti_engine.warps.flow import flow_warp
from pytti_engine.warps.warp3d import focal_length, warp_3d


def _texture(size: int, dx: float) -> np.ndarray:
    y, x = np.mgrid[0:size, 0:size].astype(np.float64)
    x = x - dx
    chans = [
        np.sin(x / 3.0 + c) * np.cos(y / 4.0 - c) + 0.5 * np.sin((x + 2 * y) / 6.0 + c) for c in range(3)
    ]
    return ((np.stack(chans, -1) + 1.5) / 3.0 * 255).clip(0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def source_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 frames at 12 fps, 32², a texture moving right 1.5 px per frame (lossless H.264)."""
    folder = tmp_path_factory.mktemp("video")
    paths = []
    for k in range(12):
        path = folder / f"{k:03d}.png"
        Image.fromarray(_texture(32, 1.5 * k)).save(path)
        paths.append(path)
    return assemble_video(
        paths, folder / "source.mp4", EncodeSettings(fps=12, crf=0, preset="ultrafast", pix_fmt="yuv444p")
    )


def _state(pixels: torch.Tensor) -> RenderState:
    image = RGBImage(pixels)
    state = RenderState(image=image, optimizer=make_optimizer(image, 0.05))
    image.decode().sum().backward()  # one step, so Adam has moments to move
    state.optimizer.step()
    return state


def _collect(out: list[torch.Tensor]) -> Callable[[FrameResult], None]:
    return lambda r: out.append(r.image)


# ---- 3D -------------------------------------------------------------------------------------------


def test_3d_flat_moves_image_and_moments_by_the_same_reprojection(write_scene: Callable[..., Path]) -> None:
    scene = load_scene(
        write_scene("animation: 3d\ndepth_model: flat\ntranslate_z: 4\nrotate_3d: [0, 0, 5]\n")
    )
    plan = build_plan(scene)
    runtime = MotionRuntime.from_scene(scene, torch.device("cpu"))
    state = _state(torch.rand(1, 3, 32, 32))
    before = state.image.decode().detach().clone()
    moment = optimizer_state_tensors(state)[0]["exp_avg"].clone()
    outcome = apply_motion(state, plan.frames[1], scene, runtime)
    f = focal_length(60.0, 32)
    depth = torch.full((1, 1, 32, 32), f - 4.0)  # the previous depth moved by translate_z
    motion = frame_motion_3d(plan.frames[1])
    expected = warp_3d(before, depth, motion, field_of_view=60.0, lock_camera=True, infill="wrap")
    torch.testing.assert_close(state.image.decode(), expected.image.clamp(0, 1), atol=1e-5, rtol=0)
    moved = warp_3d(moment, depth, motion, field_of_view=60.0, lock_camera=True, infill="wrap").image
    torch.testing.assert_close(optimizer_state_tensors(state)[0]["exp_avg"], moved, atol=1e-6, rtol=0)
    torch.testing.assert_close(outcome.target, state.image.decode().detach())


def test_3d_with_the_tiny_depth_model_runs_depth_once_per_image(
    write_scene: Callable[..., Path], tmp_path: Path
) -> None:
    model = write_tiny_depth_model(tmp_path / "depth", seed=1)
    scene = load_scene(
        write_scene(f"animation: 3d\ndepth_model: {model}\ntranslate_x: 3\nnear_plane: 20\nfar_plane: 400\n")
    )
    runtime = MotionRuntime.from_scene(scene, torch.device("cpu"))
    assert runtime.depth is not None and runtime.depth.estimator is not None
    image = torch.rand(1, 3, 32, 32)
    motion = frame_motion_3d(build_plan(scene).frames[1])
    first = grid_3d(image, motion, runtime)
    second = grid_3d(image.clone(), motion, runtime)
    assert runtime.depth.cache.misses == 1 and runtime.depth.cache.hits == 1
    torch.testing.assert_close(first, second)
    frames: list[torch.Tensor] = []
    preview_frames(scene, build_plan(scene), torch.device("cpu"), _collect(frames))
    assert len(frames) == 3 and all(torch.isfinite(f).all() for f in frames)


def test_3d_settings_enter_the_frame_keys_but_2d_keys_are_unchanged(write_scene: Callable[..., Path]) -> None:
    two_d = load_scene(write_scene("animation: 2d\nzoom: 1.1\n"))
    assert motion_fingerprint(two_d) == {}
    a = load_scene(write_scene("animation: 3d\ndepth_model: flat\nfield_of_view: 60\n", name="a.yaml"))
    b = load_scene(write_scene("animation: 3d\ndepth_model: flat\nfield_of_view: 50\n", name="b.yaml"))
    assert plan_keys(a, build_plan(a)) != plan_keys(b, build_plan(b))


# ---- validation -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("animation: 3d\n", "animation: 3d needs depth_model"),
        ("animation: 3d\ndepth_model: ./nowhere\n", "depth_model folder not found"),
        ("animation: 3d\ndepth_model: nobody/no-such-model\n", "nor in the Hugging Face cache"),
        ("animation: 3d\ndepth_model: flat\nrotate_3d: [1, 2]\n", "3 angles"),
        ("animation: 3d\ndepth_model: flat\nrotate_3d: '[1, 2, 3, 4, 5]'\n", "got 5 values"),
        ("animation: 3d\ndepth_model: flat\nfield_of_view: 180\n", "field_of_view"),
        ("animation: 3d\ndepth_model: flat\nfield_of_view: 0\n", "field_of_view"),
        ("near_plane: 10\nfar_plane: 5\n", "must exceed near_plane"),
        ("animation: video\n", "animation: video needs video_path"),
        ("animation: video\nvideo_path: missing.mp4\n", "video_path not found"),
        ("animation: video\nvideo_path: scene.yaml\n", "is not a readable video"),
        ("flow_model: raft\n", "needs flow_weights"),
        ("zoom_x: 0\n", "must be > 0"),
        ("stabilization: {edge: 1, edge_mask: nomask.png}\n", "mask file not found"),
        ("stabilization: {wobble: 1}\n", "wobble"),
    ],
)
def test_bad_motion_input_is_refused_at_load(
    write_scene: Callable[..., Path], body: str, message: str
) -> None:
    with pytest.raises(SceneError, match=message):
        load_scene(write_scene(body))


def test_depth_folder_with_wrong_contents_is_refused_at_load(
    write_scene: Callable[..., Path], tmp_path: Path
) -> None:
    folder = tmp_path / "not-depth"
    folder.mkdir()
    (folder / "config.json").write_text('{"architectures": ["CLIPModel"]}')
    with pytest.raises(SceneError, match="does not describe a depth-estimation model"):
        load_scene(write_scene(f"animation: 3d\ndepth_model: {folder}\n"))
    (folder / "config.json").write_text('{"architectures": ["DepthAnythingForDepthEstimation"]}')
    with pytest.raises(SceneError, match="no model.safetensors"):
        load_scene(write_scene(f"animation: 3d\ndepth_model: {folder}\n"))


def test_rotation_vector_accepts_expressions_and_a_quaternion(write_scene: Callable[..., Path]) -> None:
    scene = load_scene(
        write_scene("animation: 3d\ndepth_model: flat\nrotate_3d: '[cos(0), 0, sin(t), min(1, 2) - 1]'\n")
    )
    plan = build_plan(scene)
    assert plan.frames[0].rotate_3d == (1.0, 0.0, 0.0, 0.0)
    assert plan.frames[1].rotate_3d[2] == pytest.approx(np.sin(1 / 12))
    assert plan.frames[1].to_dict()["rotate_3d"][0] == 1.0


# ---- video source -------------------------------------------------------------------------------


def test_decode_and_source_indices(source_video: Path) -> None:
    frames = decode_source(source_video, 12.0, (32, 32))
    assert frames.shape == (12, 32, 32, 3)
    assert np.abs(frames[5].astype(int) - _texture(32, 7.5).astype(int)).mean() < 3
    assert decode_source(source_video, 6.0, (16, 24)).shape == (6, 24, 16, 3)
    assert [source_index(k, 2, 12) for k in (1, 2, 6, 7, 20)] == [0, 2, 10, 11, 11]


def test_video_mode_follows_the_source_through_the_flow(
    write_scene: Callable[..., Path], source_video: Path
) -> None:
    scene = load_scene(
        write_scene(f"animation: video\nvideo_path: {source_video}\ninfill_mode: smear\n", frames=5)
    )
    plan = build_plan(scene)
    frames: list[torch.Tensor] = []
    preview_frames(scene, plan, torch.device("cpu"), _collect(frames), init_image=None)
    video = VideoSource.from_scene(scene, torch.device("cpu"))
    for k, image in enumerate(frames, start=1):
        err = (image - video.source(k)).abs()[..., 4:-4, 4:-4].mean()
        assert err < 0.03, (k, float(err))  # the warped previous output matches the next source frame


def test_reencode_each_frame_shows_the_source_and_steps_0_render_matches_preview(
    write_scene: Callable[..., Path], source_video: Path
) -> None:
    body = f"animation: video\nvideo_path: {source_video}\nreencode_each_frame: true\nframe_stride: 2\n"
    scene = load_scene(write_scene(body, frames=4, steps=0))
    plan = build_plan(scene)
    video = VideoSource.from_scene(scene, torch.device("cpu"))
    rendered: list[bytes] = []
    ctx = build_context(scene, plan, torch.device("cpu"))
    render_frames(plan.frames, ctx, on_frame=lambda r: rendered.append(png_bytes(r.image)))
    assert rendered == [png_bytes(video.source(k)) for k in range(1, 5)]
    assert source_index(4, 2, len(video.frames)) == 6


def test_occluded_pixels_are_reinitialized_from_the_source(
    source_video: Path, write_scene: Callable[..., Path]
) -> None:
    scene = load_scene(write_scene(f"animation: video\nvideo_path: {source_video}\ninfill_mode: black\n"))
    video = VideoSource.from_scene(scene, torch.device("cpu"))
    state = _state(torch.zeros(1, 3, 32, 32))  # a black render: occlusions show the source
    outcome = video.advance(state, 2, "black", "bilinear")
    assert outcome.valid is not None and outcome.source is not None
    occluded = outcome.valid < 0.5
    assert occluded.any() and not occluded.all()  # content moved right: the left edge is new
    image = state.image.decode()
    torch.testing.assert_close(image[occluded.expand_as(image)], outcome.source[occluded.expand_as(image)])
    assert image[~occluded.expand_as(image)].abs().max() < 1e-6  # warped black stays black


def test_precomputed_flows_are_used_and_match(
    source_video: Path, write_scene: Callable[..., Path], tmp_path: Path
) -> None:
    scene = load_scene(write_scene(f"animation: video\nvideo_path: {source_video}\n", frames=4))
    paths = precompute_flows(scene, tmp_path / "flows", frames=[2, 3])
    assert paths == [flow_file(tmp_path / "flows", 2), flow_file(tmp_path / "flows", 3)]
    cached = VideoSource.from_scene(scene, torch.device("cpu"), flow_dir=tmp_path / "flows")
    live = VideoSource.from_scene(scene, torch.device("cpu"))
    for k in (2, 3, 4):
        torch.testing.assert_close(cached.flow(k).backward, live.flow(k).backward)
        torch.testing.assert_close(cached.flow(k).valid, live.flow(k).valid)
    flow = live.flow(3)
    predicted = flow_warp(live.source(2), flow.backward, padding="smear")
    assert (predicted - live.source(3)).abs()[..., 4:-4, 4:-4].mean() < 0.03


@pytest.mark.parametrize("image_model", ["unlimited_palette", "limited_palette"])
def test_3d_and_video_motion_on_a_low_resolution_image_model(
    write_scene: Callable[..., Path], source_video: Path, image_model: str
) -> None:
    """pixel_size 2: the parameters are a 16² grid; the 32² motion grid is resized to it."""
    for body in (
        "animation: 3d\ndepth_model: flat\nrotate_3d: [0, 0, 8]\ntranslate_z: 3\n",
        f"animation: video\nvideo_path: {source_video}\n",
    ):
        scene = load_scene(
            write_scene(f"{body}pixel_size: 2\nimage_model: {image_model}\n", frames=2, steps=0)
        )
        frames: list[torch.Tensor] = []
        preview_frames(scene, build_plan(scene), torch.device("cpu"), _collect(frames))
        assert all(f.shape == (1, 3, 32, 32) and torch.isfinite(f).all() for f in frames)
        assert (frames[1] - frames[0]).abs().mean() > 1e-3
