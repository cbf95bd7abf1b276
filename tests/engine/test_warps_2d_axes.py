"""Per-axis zoom of the 2D warp (``zoom_x`` / ``zoom_y``), with known answers."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from pytti_engine.warps import Motion2D, motion_matrix, warp_2d


def test_zoom_x_2_maps_the_centre_half_columns_to_the_full_width() -> None:
    img = torch.rand(1, 3, 16, 64)
    out = warp_2d(img, Motion2D(zoom_x=2.0), infill="black")
    expected = F.interpolate(img[..., 16:48], size=(16, 64), mode="bilinear", align_corners=False)
    torch.testing.assert_close(out[..., 1:-1], expected[..., 1:-1], atol=1e-5, rtol=0)


def test_zoom_y_2_maps_the_centre_half_rows_to_the_full_height() -> None:
    img = torch.rand(1, 3, 64, 16)
    out = warp_2d(img, Motion2D(zoom_y=2.0), infill="black")
    expected = F.interpolate(img[..., 16:48, :], size=(64, 16), mode="bilinear", align_corners=False)
    torch.testing.assert_close(out[..., 1:-1, :], expected[..., 1:-1, :], atol=1e-5, rtol=0)


def test_axis_zooms_multiply_with_zoom() -> None:
    both = Motion2D(zoom=2.0, zoom_x=1.5, zoom_y=0.5)
    assert both.scale == (3.0, 1.0)
    m = motion_matrix(both, 9, 9)[0]
    torch.testing.assert_close(m[:2, :2], torch.tensor([[3.0, 0.0], [0.0, 1.0]]))
    img = torch.rand(1, 3, 24, 24)
    uniform = warp_2d(img, Motion2D(zoom=1.3))
    split = warp_2d(img, Motion2D(zoom_x=1.3, zoom_y=1.3))
    torch.testing.assert_close(uniform, split)


def test_axis_zoom_is_not_identity_and_must_be_positive() -> None:
    assert not Motion2D(zoom_x=1.1).is_identity()
    assert Motion2D(zoom=2.0, zoom_x=0.5, zoom_y=0.5).is_identity()  # the scales cancel
    with pytest.raises(ValueError, match="zoom_y must be > 0"):
        Motion2D(zoom_y=0.0)


def test_axis_zoom_with_rotation_scales_screen_axes_first() -> None:
    # A marker on the x axis, stretched 2x horizontally then rotated 90 deg CCW, lands above the centre.
    img = torch.zeros(1, 1, 33, 33)
    img[0, 0, 16, 20] = 1.0  # 4 px right of the centre (16, 16)
    out = warp_2d(img, Motion2D(zoom_x=2.0, rotate=90.0), infill="black", sampling="nearest")
    lit = {(int(x), int(y)) for y, x in (out[0, 0] > 0.5).nonzero().tolist()}
    # 8 px up (nearest sampling of a 2x stretch lights the neighbour toward the centre too)
    assert (16, 8) in lit and lit <= {(16, 7), (16, 8), (16, 9)}
