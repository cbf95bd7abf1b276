"""Motion-field export (``export: [flow]``): the field of each animation mode and its colour coding."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pytti_engine.depth import DepthProvider
from pytti_engine.exports import export_flow_maps, flow_png_bytes, flow_to_rgb, rgb_to_flow
from pytti_engine.motion import CameraSettings, MotionRuntime, frame_motion_3d, motion_flow
from pytti_engine.video_source import FrameFlow, VideoSource, save_frame_flows
from pytti_engine.warps import Motion2D, warp_2d
from pytti_engine.warps.flow import flow_warp
from pytti_engine.warps.warp3d import camera_transform, intrinsics_from_fov

H = W = 32


@dataclass(frozen=True)
class Frame:
    """The plan values motion reads (the rest default to identity)."""

    index: int = 2
    translate_x: float = 0.0
    translate_y: float = 0.0
    rotate_2d: float = 0.0
    zoom: float = 1.0
    translate_z: float = 0.0
    rotate_3d: tuple[float, float, float] = (0.0, 0.0, 0.0)


def _image(seed: int = 0) -> torch.Tensor:
    return torch.rand(1, 3, H, W, generator=torch.Generator().manual_seed(seed))


def _decode_png(data: bytes, scale: float) -> torch.Tensor:
    rgb = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.float32) / 255
    return rgb_to_flow(torch.from_numpy(rgb).permute(2, 0, 1)[None], scale)


def test_2d_translation_is_two_pixels_right_and_survives_the_png() -> None:
    flow = motion_flow(_image(), Frame(translate_x=2.0), "2d")
    assert flow.shape == (1, 2, H, W)
    torch.testing.assert_close(flow[0, 0], torch.full((H, W), 2.0), atol=1e-4, rtol=0)
    torch.testing.assert_close(flow[0, 1], torch.zeros(H, W), atol=1e-4, rtol=0)
    decoded = _decode_png(flow_png_bytes(flow, 2.0), 2.0)
    torch.testing.assert_close(decoded, flow, atol=0.05, rtol=0)


def test_2d_up_is_negative_y_and_colour_directions() -> None:
    flow = motion_flow(_image(), Frame(translate_y=3.0), "2d")  # + translate_y moves content up
    torch.testing.assert_close(flow[0, 1], torch.full((H, W), -3.0), atol=1e-4, rtol=0)
    right = flow_to_rgb(torch.tensor([1.0, 0.0]).view(1, 2, 1, 1), 1.0)[0, :, 0, 0]
    torch.testing.assert_close(right, torch.tensor([1.0, 0.0, 0.0]), atol=1e-5, rtol=0)  # right = red
    left = flow_to_rgb(torch.tensor([-0.5, 0.0]).view(1, 2, 1, 1), 1.0)[0, :, 0, 0]
    torch.testing.assert_close(left, torch.tensor([0.0, 0.5, 0.5]), atol=1e-5, rtol=0)  # half cyan


def test_2d_field_is_the_warp_of_the_same_matrix() -> None:
    img = _image()
    motion = Frame(translate_x=1.5, translate_y=-0.5, rotate_2d=7.0, zoom=1.1)
    flow = motion_flow(img, motion, "2d")
    expected = warp_2d(img, Motion2D(1.5, -0.5, 7.0, 1.1), infill="black")
    torch.testing.assert_close(flow_warp(img, -flow, padding="black"), expected, atol=1e-5, rtol=0)


def test_off_and_identity_are_zero() -> None:
    assert not motion_flow(_image(), Frame(translate_x=5.0), "off").any()
    assert not motion_flow(_image(), Frame(), "2d").any()
    runtime = MotionRuntime(camera=CameraSettings(), depth=DepthProvider(None, 200.0, 10000.0, 60.0))
    assert not motion_flow(_image(), Frame(), "3d", runtime).any()


def test_3d_rotation_matches_its_homography() -> None:
    camera = CameraSettings(field_of_view=60.0, lock_camera=False, depth_model="flat")
    runtime = MotionRuntime(camera=camera, depth=DepthProvider(None, 200.0, 10000.0, 60.0))
    frame = Frame(rotate_3d=(2.0, -3.0, 1.0))
    flow = motion_flow(_image(), frame, "3d", runtime).double()
    k = intrinsics_from_fov(60.0, H, W, dtype=torch.float64)[0]
    motion = camera_transform(frame_motion_3d(frame), dtype=torch.float64)[0, :3, :3]  # X_old = r X_new
    backward = k @ motion @ torch.linalg.inv(k)  # new pixel -> previous pixel
    ys, xs = torch.meshgrid(
        torch.arange(H, dtype=torch.float64), torch.arange(W, dtype=torch.float64), indexing="ij"
    )
    points = torch.stack([xs, ys, torch.ones_like(xs)], dim=-1) @ backward.T  # (H, W, 3)
    source = points[..., :2] / points[..., 2:]
    expected = torch.stack([xs - source[..., 0], ys - source[..., 1]])[None]
    assert expected.abs().max() > 0.5  # a real motion
    torch.testing.assert_close(flow, expected, atol=1e-3, rtol=0)


def test_video_uses_the_precomputed_flow(tmp_path: Path) -> None:
    def refuse(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        raise AssertionError("the precomputed flow should be read, not computed")

    backward = torch.randn(1, 2, H, W)
    save_frame_flows([FrameFlow(frame=2, backward=backward, valid=torch.ones(1, 1, H, W))], tmp_path)
    frames = np.zeros((3, H, W, 3), dtype=np.uint8)
    video = VideoSource(frames, 1, refuse, torch.device("cpu"), flow_dir=tmp_path)
    runtime = MotionRuntime(camera=CameraSettings(), video=video)
    torch.testing.assert_close(motion_flow(_image(), Frame(index=2), "video", runtime), -backward)


def test_export_writes_pngs_and_the_run_scale(tmp_path: Path) -> None:
    frames = []
    for i in range(1, 4):
        path = tmp_path / "frames" / f"{i:06d}.png"
        path.parent.mkdir(exist_ok=True)
        Image.fromarray(np.full((H, W, 3), 40 * i, dtype=np.uint8)).save(path)
        frames.append(path)
    plan = [Frame(index=1), Frame(index=2, translate_x=2.0), Frame(index=3, translate_x=1.0)]
    written = export_flow_maps(frames, tmp_path / "flow", plan, "2d", None, device=torch.device("cpu"))
    assert [p.name for p in written] == ["000001.png", "000002.png", "000003.png"]
    scale = json.loads((tmp_path / "flow" / "flow.json").read_text())["max_magnitude_px"]
    assert scale == pytest.approx(2.0, abs=1e-4)
    first, second, third = (_decode_png(p.read_bytes(), scale) for p in written)
    assert not first.any()
    torch.testing.assert_close(second[0, :, 5, 5], torch.tensor([2.0, 0.0]), atol=0.05, rtol=0)
    torch.testing.assert_close(third[0, :, 5, 5], torch.tensor([1.0, 0.0]), atol=0.05, rtol=0)
