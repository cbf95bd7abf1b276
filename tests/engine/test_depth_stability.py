"""Depth that does not breathe, and an exact reprojection through the previous frame's depth (issue 14.2).

The depth model here is a function of the picture (no network): the disparity is a given map plus
whatever the picture's red channel adds, so a change of content changes the disparity there only.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from pytti_engine.checkpoints import CheckpointMeta, checkpoint_bytes, load_checkpoint
from pytti_engine.depth import DepthProvider, DepthScale
from pytti_engine.image_params import RGBImage
from pytti_engine.motion import CameraSettings, MotionRuntime, apply_motion, grid_3d
from pytti_engine.state import RenderState, make_optimizer
from pytti_engine.warps.warp3d import (
    Motion3D,
    camera_transform,
    focal_length,
    reprojection_grid,
    reprojection_grid_from_previous,
)

H, W = 48, 64
FOV = 60.0


class _Frame:
    """The motion values of one frame (what ``apply_motion`` reads)."""

    def __init__(self, index: int, translate_x: float) -> None:
        self.index, self.translate_x = index, translate_x
        self.translate_y = self.rotate_2d = 0.0
        self.zoom = 1.0


class _Settings:
    animation = "3d"
    infill_mode = "smear"
    sampling_mode = "bilinear"


def _estimator(background: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """Disparity = ``background`` + 4 × the picture's red channel (a red object is near)."""
    return lambda image: background + 4.0 * image[:, :1]


def _runtime(background: torch.Tensor, near: float = 100.0, far: float = 1000.0) -> MotionRuntime:
    camera = CameraSettings(
        field_of_view=FOV, near_plane=near, far_plane=far, lock_camera=False, depth_model="x"
    )
    return MotionRuntime(camera=camera, depth=DepthProvider(_estimator(background), near, far, FOV))


def _ramp() -> torch.Tensor:
    return torch.linspace(0.0, 1.0, W).view(1, 1, 1, W).expand(1, 1, H, W).clone()


def test_a_static_camera_keeps_its_parallax_when_a_near_object_appears() -> None:
    """Frame boundary 1 -> 2 over a plain picture, then 2 -> 3 after a red (near) square appeared in a
    corner: the unchanged background keeps exactly the same depth, so it moves exactly as before."""
    runtime = _runtime(_ramp())
    picture = torch.zeros(1, 3, H, W)
    image = RGBImage(picture.clone())
    state = RenderState(image=image, optimizer=make_optimizer(image, 0.01))
    apply_motion(state, _Frame(2, translate_x=8.0), _Settings(), runtime)
    assert state.depth_scale is not None
    first = grid_3d(picture, Motion3D(translate_x=8.0), runtime)
    changed = picture.clone()
    changed[:, 0, :12, :12] = 1.0  # a near object enters; the rest of the picture is unchanged
    state.image.encode(changed)
    scale = state.depth_scale
    apply_motion(state, _Frame(3, translate_x=8.0), _Settings(), runtime)
    assert state.depth_scale == scale  # fixed by the first estimate
    second = grid_3d(changed, Motion3D(translate_x=8.0), runtime)
    background = (slice(None), slice(24, None), slice(24, None))  # far from the square and its reach
    torch.testing.assert_close(second[background], first[background], atol=1e-4, rtol=0)
    # The near square itself is nearer than anything in the first frame: clamped to near_plane, not
    # renormalized (the whole frame would shift otherwise).
    depth = runtime.depth.depth(changed)  # type: ignore[union-attr]
    assert float(depth[0, 0, :12, :12].min()) == pytest.approx(100.0)
    assert float(depth.amax()) == pytest.approx(1000.0)


def test_depth_scale_is_fixed_once_and_survives_a_checkpoint(tmp_path: Path) -> None:
    background = _ramp()
    provider = DepthProvider(_estimator(background), 100.0, 1000.0, FOV)
    plain = provider.depth(torch.zeros(1, 3, H, W))
    # The first frame spans near .. far.
    assert float(plain.amin()) == pytest.approx(100.0) and float(plain.amax()) == pytest.approx(1000.0)
    brighter = provider.depth(torch.full((1, 3, H, W), 0.1))  # disparity + 0.4 everywhere: everything nearer
    # A per-frame min-max would give the same map again; the fixed scale brings everything nearer.
    assert bool((brighter <= plain).all()) and float(brighter.amax()) < 0.3 * float(plain.amax())
    # The scale travels in the render state and its checkpoint.
    image = RGBImage(torch.zeros(1, 3, H, W))
    state = RenderState(image=image, optimizer=make_optimizer(image, 0.01), depth_scale=(1.5, -0.25))
    path = tmp_path / "000001.pt"
    path.write_bytes(checkpoint_bytes(state, CheckpointMeta(frame=1, step=0, key="k", png_sha256="0")))
    restored, _ = load_checkpoint(path, learning_rate=0.01, device=torch.device("cpu"))
    assert restored.depth_scale == (1.5, -0.25)
    assert DepthScale(*restored.depth_scale).to_list() == [1.5, -0.25]


def _plane_depth(normal: torch.Tensor, distance: float) -> torch.Tensor:
    """:math:`(1, 1, H, W)` depth of the plane ``normal · X = distance`` (OpenCV camera, pixels)."""
    f = focal_length(FOV, H)
    xs = (torch.arange(W, dtype=torch.float64) - (W - 1) / 2) / f
    ys = (torch.arange(H, dtype=torch.float64) - (H - 1) / 2) / f
    rays = torch.stack(
        [xs.view(1, W).expand(H, W), ys.view(H, 1).expand(H, W), torch.ones(H, W, dtype=torch.float64)]
    )
    return (distance / torch.einsum("i,ihw->hw", normal, rays))[None, None]


def test_reprojection_is_exact_on_a_slanted_plane() -> None:
    """The renderer's 3D grid over a plane slanted 35° (depth 35 .. 94 px), camera moving sideways and
    forward ~12 px: within 0.2 px of the exact map (the plane's homography), where reusing the previous
    depth shifted by translate_z is off by more than a pixel."""
    normal = torch.tensor([0.7, 0.0, 1.0], dtype=torch.float64)
    normal = normal / normal.norm()
    motion = Motion3D(translate_x=4.0, translate_z=6.0)
    old = _plane_depth(normal, 40.0)
    matrix = camera_transform(motion, dtype=torch.float64)[0]  # X_old = R X_new + t
    rot, shift = matrix[:3, :3], matrix[:3, 3]
    new = _plane_depth(rot.T @ normal, 40.0 - float(normal @ shift))  # the plane seen by the new camera
    exact = reprojection_grid(new, motion, FOV)[0]
    identity = torch.stack(torch.meshgrid(torch.arange(W), torch.arange(H), indexing="xy"), dim=-1)
    assert float((exact - identity).norm(dim=-1).max()) > 7.0
    seen_before = (
        (exact[..., 0] >= 0) & (exact[..., 0] <= W - 1) & (exact[..., 1] >= 0) & (exact[..., 1] <= H - 1)
    )
    # The renderer's path: a depth model whose disparity is the plane's inverse depth, mapped exactly.
    inverse = (1.0 / old).float()
    near, far = float(old.min()), float(old.max())
    runtime = _runtime(inverse, near=near, far=far)  # a black picture adds nothing
    grid = grid_3d(torch.zeros(1, 3, H, W), motion, runtime)[0].double()
    error = (grid - exact).norm(dim=-1)[seen_before]
    assert float(error.max()) < 0.2
    one_shot = reprojection_grid((old - motion.translate_z).clamp_min(1.0), motion, FOV)[0]
    assert float((one_shot - exact).norm(dim=-1)[seen_before].max()) > 1.0
    # Rotations need no depth at all: the solver returns the homography for any depth.
    turn = Motion3D(rotate=(2.0, -3.0, 1.0))
    torch.testing.assert_close(
        reprojection_grid_from_previous(old, turn, FOV), reprojection_grid(old, turn, FOV), atol=1e-6, rtol=0
    )
    assert math.isfinite(float(grid.abs().max()))
