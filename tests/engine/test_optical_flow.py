"""Flow warping, occlusions (warps.flow) and the flow estimators (optical_flow): known synthetic flows."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from pytti_engine.errors import ModelLoadError, ShapeError
from pytti_engine.optical_flow import DISFlow, RAFTFlow, backward_flow, load_flow_model
from pytti_engine.warps import Motion2D, warp_2d
from pytti_engine.warps.flow import flow_grid, flow_warp, occlusion_mask


def _texture(height: int = 64, width: int = 64, shift: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """A smooth multi-frequency texture, content moved by ``shift`` = (dx, dy) pixels."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    x, y = x - shift[0], y - shift[1]
    chans = [
        np.sin(x / 3.1 + c) * np.cos(y / 4.3 - c) + 0.5 * np.sin((x + 2 * y) / 7.0 + 2 * c) for c in range(3)
    ]
    return ((np.stack(chans, -1) + 1.5) / 3.0 * 255).clip(0, 255).astype(np.uint8)


def test_zero_flow_is_identity_and_constant_flow_shifts() -> None:
    img = torch.rand(1, 3, 16, 20)
    torch.testing.assert_close(flow_warp(img, torch.zeros(1, 2, 16, 20)), img, atol=1e-5, rtol=0)
    flow = torch.zeros(1, 2, 16, 20)
    flow[:, 0], flow[:, 1] = -3.0, 2.0  # came from 3 left, 2 below: content moved right 3 and up 2
    out = flow_warp(img, flow, padding="black")
    expected = warp_2d(img, Motion2D(translate_x=3.0, translate_y=2.0), infill="black")
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)


def test_warp_with_a_known_synthetic_flow_reconstructs_the_target() -> None:
    height = width = 48
    ys, xs = torch.meshgrid(
        torch.arange(height, dtype=torch.float64), torch.arange(width, dtype=torch.float64), indexing="ij"
    )

    def scene(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.stack(
            [torch.sin(x / 5) * torch.cos(y / 7), torch.cos((x + y) / 9), torch.sin(x * y / 300)]
        )[None]

    # Swirl + translation: the target at p shows the source at p + flow(p).
    flow = torch.stack([2.5 * torch.sin(ys / 10) + 1.0, -1.5 * torch.cos(xs / 8)])[None]
    source = scene(xs, ys)
    target = scene(xs + flow[0, 0], ys + flow[0, 1])
    out = flow_warp(source, flow, padding="smear", sampling="bicubic")
    inner = (slice(None), slice(None), slice(4, -4), slice(4, -4))
    err = (out - target)[inner].abs()
    assert err.max() < 0.03 and err.mean() < 3e-3  # interpolation error of a smooth signal only


def test_occlusion_mask_marks_revealed_pixels() -> None:
    # Content moves right 4 px: backward flow -4 everywhere, forward flow +4; the left 4 columns are new.
    backward = torch.zeros(1, 2, 12, 16)
    backward[:, 0] = -4.0
    forward = torch.zeros(1, 2, 12, 16)
    forward[:, 0] = 4.0
    valid = occlusion_mask(backward, forward)
    assert valid.shape == (1, 1, 12, 16)
    assert valid[..., :4].sum() == 0 and valid[..., 4:].min() == 1
    # Inconsistent flows (forward does not return) are invalid.
    assert occlusion_mask(backward, torch.zeros_like(forward))[..., 4:].sum() == 0


def test_flow_grid_and_shape_checks() -> None:
    grid = flow_grid(torch.ones(1, 2, 3, 4))
    assert grid.shape == (1, 3, 4, 2) and grid[0, 0, 0].tolist() == [1.0, 1.0]
    with pytest.raises(ShapeError):
        flow_warp(torch.rand(1, 3, 8, 8), torch.zeros(1, 2, 8, 9))
    with pytest.raises(ShapeError):
        flow_grid(torch.zeros(1, 3, 8, 8))


def test_gradient_reaches_image_and_flow() -> None:
    img = torch.rand(1, 3, 8, 8, requires_grad=True)
    flow = (torch.rand(1, 2, 8, 8) * 2 - 1).requires_grad_(True)
    flow_warp(img, flow).sum().backward()
    assert img.grad is not None and flow.grad is not None and flow.grad.abs().sum() > 0


def test_dis_recovers_a_known_translation() -> None:
    a = _texture()
    b = _texture(shift=(3.0, -2.0))  # content moved right 3, up 2
    flow = backward_flow(DISFlow("medium"), a, b)
    assert flow.shape == (1, 2, 64, 64) and flow.dtype == torch.float32
    inner = flow[..., 8:-8, 8:-8]
    assert abs(float(inner[:, 0].median()) + 3.0) < 0.1
    assert abs(float(inner[:, 1].median()) - 2.0) < 0.1
    warped = flow_warp(torch.from_numpy(a).permute(2, 0, 1)[None].float(), flow)
    err = (warped - torch.from_numpy(b).permute(2, 0, 1)[None].float()).abs()[..., 8:-8, 8:-8]
    assert float(err.mean()) < 3.0  # 8-bit levels


def test_dis_rejects_mismatched_frames() -> None:
    with pytest.raises(ValueError, match="uint8 frames of one size"):
        DISFlow()(_texture(), _texture(32, 32))


def test_missing_opencv_is_a_model_load_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "cv2", None)
    with pytest.raises(ModelLoadError, match=r"install pytti-flow\[flow\]"):
        load_flow_model("dis", torch.device("cpu"))


def test_raft_needs_weights_and_loads_a_user_state_dict(tmp_path: Path) -> None:
    from torchvision.models.optical_flow import raft_small

    with pytest.raises(ModelLoadError, match="flow_weights"):
        load_flow_model("raft", torch.device("cpu"))
    bad = tmp_path / "bad.pth"
    torch.save({"nope": torch.zeros(1)}, bad)
    with pytest.raises(ModelLoadError, match="not a torchvision raft_small or raft_large"):
        load_flow_model("raft", torch.device("cpu"), weights=bad)
    weights = tmp_path / "raft_small.pth"
    torch.manual_seed(0)
    torch.save(raft_small(weights=None).state_dict(), weights)
    estimator = load_flow_model("raft", torch.device("cpu"), weights=weights)
    assert isinstance(estimator, RAFTFlow)
    estimator.iterations = 2  # random weights: only the plumbing is under test
    flow = estimator(_texture(30, 36), _texture(30, 36, shift=(1.0, 0.0)))  # padded to multiples of 8 inside
    assert flow.shape == (30, 36, 2) and np.isfinite(flow).all()
    assert math.isfinite(float(flow.mean()))
