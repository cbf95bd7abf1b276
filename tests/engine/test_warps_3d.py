"""Known-answer tests for the 3D reprojection warp (pytti_engine.warps.warp3d)."""

from __future__ import annotations

import math

import pytest
import torch
from kornia.geometry.depth import warp_frame_depth
from kornia.geometry.transform import warp_perspective

from pytti_engine.errors import ShapeError
from pytti_engine.warps import Motion2D, warp_2d
from pytti_engine.warps.warp3d import (
    Motion3D,
    camera_transform,
    focal_length,
    intrinsics_from_fov,
    reprojection_grid,
    rotation_matrix,
    warp_3d,
)

H, W = 24, 32


def _image(seed: int = 0) -> torch.Tensor:
    return torch.rand(1, 3, H, W, generator=torch.Generator().manual_seed(seed))


def _random_depth(seed: int = 1) -> torch.Tensor:
    return torch.rand(1, 1, H, W, generator=torch.Generator().manual_seed(seed)) * 60 + 20


def _flat(value: float) -> torch.Tensor:
    return torch.full((1, 1, H, W), value)


def test_identity_returns_input_and_zero_flow() -> None:
    img = _image()
    out = warp_3d(img, _random_depth(), Motion3D(rotate=(1.0, 0.0, 0.0, 0.0)), field_of_view=60.0)
    assert out.image is img
    assert out.flow.shape == (1, 2, H, W) and not out.flow.any()


def test_equals_kornia_warp_frame_depth() -> None:
    img, depth = _image(), _random_depth()
    motion = Motion3D(translate_x=3.0, translate_y=-2.0, translate_z=4.0, rotate=(1.0, 2.0, 3.0))
    out = warp_3d(img, depth, motion, field_of_view=60.0, infill="black")
    k = intrinsics_from_fov(60.0, H, W)
    expected = warp_frame_depth(img, depth, camera_transform(motion), k)
    torch.testing.assert_close(out.image, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("rotate", [(2.0, -3.0, 1.0), (0.0, 5.0, 0.0), (0.9990482, 0.0436194, 0.0, 0.0)])
def test_rotation_with_any_depth_equals_its_homography(rotate: tuple[float, ...]) -> None:
    img, depth = _image(), _random_depth()
    motion = Motion3D(rotate=rotate)
    out = warp_3d(img, depth, motion, field_of_view=60.0, infill="black")
    k = intrinsics_from_fov(60.0, H, W, dtype=torch.float64)
    r = camera_transform(motion, dtype=torch.float64)[:, :3, :3]  # X_old = r X_new
    homography = k @ r.transpose(1, 2) @ torch.linalg.inv(k)  # previous pixel -> new pixel
    expected = warp_perspective(img, homography.float(), (H, W), align_corners=True)
    torch.testing.assert_close(out.image, expected, atol=1e-4, rtol=0)


def test_forward_move_with_constant_depth_equals_the_matching_zoom() -> None:
    img = _image()
    z, move = 50.0, 10.0
    # The new frame's depth is z - move; content at that depth grew by z / (z - move).
    out = warp_3d(img, _flat(z - move), Motion3D(translate_z=move), field_of_view=60.0, infill="black")
    expected = warp_2d(img, Motion2D(zoom=z / (z - move)), infill="black")
    torch.testing.assert_close(out.image, expected, atol=1e-5, rtol=0)


def test_flat_depth_at_the_focal_distance_translates_like_2d() -> None:
    img = _image()
    f = focal_length(60.0, H)
    motion = Motion3D(translate_x=3.0, translate_y=2.0)
    out = warp_3d(img, _flat(f), motion, field_of_view=60.0, infill="wrap")
    expected = warp_2d(img, Motion2D(translate_x=3.0, translate_y=2.0), infill="wrap")
    torch.testing.assert_close(out.image, expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(out.flow[:, 0], torch.full((1, H, W), -3.0), atol=1e-4, rtol=0)
    torch.testing.assert_close(out.flow[:, 1], torch.full((1, H, W), 2.0), atol=1e-4, rtol=0)


def test_roll_about_z_equals_rotate_2d_counter_clockwise() -> None:
    img = _image()
    out = warp_3d(img, _random_depth(), Motion3D(rotate=(0.0, 0.0, 10.0)), field_of_view=60.0, infill="black")
    expected = warp_2d(img, Motion2D(rotate=10.0), infill="black")
    torch.testing.assert_close(out.image, expected, atol=1e-5, rtol=0)


def test_parallax_near_content_moves_more() -> None:
    depth = _flat(100.0)
    depth[..., : H // 2, :] = 20.0  # top half near
    grid = reprojection_grid(depth, Motion3D(translate_x=2.0), 60.0)
    f = focal_length(60.0, H)
    shift = grid[0, ..., 0] - torch.arange(W, dtype=grid.dtype)
    torch.testing.assert_close(
        shift[0], torch.full((W,), -2.0 * f / 20.0, dtype=grid.dtype), atol=1e-4, rtol=0
    )
    torch.testing.assert_close(
        shift[-1], torch.full((W,), -2.0 * f / 100.0, dtype=grid.dtype), atol=1e-4, rtol=0
    )


def test_lock_camera_removes_the_mean_drift() -> None:
    grid = reprojection_grid(
        _random_depth(), Motion3D(translate_x=5.0, rotate=(0.0, 1.0, 0.0)), 60.0, lock_camera=True
    )
    ys, xs = torch.meshgrid(
        torch.arange(H, dtype=grid.dtype), torch.arange(W, dtype=grid.dtype), indexing="ij"
    )
    offset = grid[0] - torch.stack([xs, ys], -1)
    torch.testing.assert_close(offset.mean(dim=(0, 1)), torch.zeros(2, dtype=grid.dtype), atol=1e-5, rtol=0)
    assert offset.abs().max() > 0.1  # parallax remains


def test_quaternion_and_rotation_vector_agree() -> None:
    half = math.radians(3.0) / 2
    quat = (math.cos(half), 0.0, math.sin(half), 0.0)
    torch.testing.assert_close(rotation_matrix(quat), rotation_matrix((0.0, 3.0, 0.0)))
    # Not normalized: same rotation.
    torch.testing.assert_close(rotation_matrix(tuple(2 * q for q in quat)), rotation_matrix(quat))


def test_point_behind_the_camera_is_filled_by_infill() -> None:
    img = torch.ones(1, 1, H, W)
    # Moving 1000 px away from content now at depth 5: it was behind the previous camera.
    out = warp_3d(img, _flat(5.0), Motion3D(translate_z=-1000.0), field_of_view=60.0, infill="black")
    assert torch.isfinite(out.image).all() and out.image.sum() == 0


def test_bad_inputs_raise() -> None:
    with pytest.raises(ValueError, match=r"field_of_view must be in \(0, 180\)"):
        focal_length(180.0, 10)
    with pytest.raises(ValueError, match="3 angles or a quaternion"):
        Motion3D(rotate=(1.0, 2.0))
    with pytest.raises(ValueError, match="must not be zero"):
        Motion3D(rotate=(0.0, 0.0, 0.0, 0.0))
    with pytest.raises(ValueError, match="finite"):
        Motion3D(translate_z=math.inf)
    with pytest.raises(ShapeError):
        warp_3d(_image(), torch.ones(1, 1, H, W + 1), Motion3D(translate_x=1.0), field_of_view=60.0)
    with pytest.raises(ShapeError):
        warp_3d(_image(), torch.ones(1, 2, H, W), Motion3D(translate_x=1.0), field_of_view=60.0)


def test_gradient_reaches_the_image_and_modes_apply() -> None:
    img = _image().requires_grad_(True)
    motion = Motion3D(translate_x=1.5, rotate=(0.0, 0.0, 4.0))
    for infill in ("mirror", "wrap", "black", "smear"):
        for sampling in ("nearest", "bilinear", "bicubic"):
            out = warp_3d(img, _random_depth(), motion, field_of_view=50.0, infill=infill, sampling=sampling)  # type: ignore[arg-type]
            assert out.image.shape == img.shape
    warp_3d(img, _random_depth(), motion, field_of_view=50.0).image.sum().backward()
    assert img.grad is not None and img.grad.abs().sum() > 0


def test_gradcheck_float64() -> None:
    img = torch.rand(1, 1, 6, 7, dtype=torch.float64, requires_grad=True)
    depth = torch.full((1, 1, 6, 7), 9.0, dtype=torch.float64)
    motion = Motion3D(translate_x=0.3, translate_z=0.5, rotate=(0.0, 0.0, 3.0))
    assert torch.autograd.gradcheck(
        lambda x: warp_3d(x, depth, motion, field_of_view=60.0, infill="black").image, (img,)
    )
