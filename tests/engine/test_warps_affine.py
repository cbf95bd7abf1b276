"""Known-answer tests for the 2D warp (pytti_engine.warps.affine) and its mode mapping (warps.modes)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from pytti_engine.checks import check_shape
from pytti_engine.errors import ShapeError
from pytti_engine.warps import Motion2D, motion_matrix, sample_affine, sample_pixels, warp_2d
from pytti_engine.warps.modes import cutout_padding, grid_sample_padding


def _smooth(size: int = 64, channels: int = 3) -> torch.Tensor:
    """A low-frequency test image (repeated bilinear resampling barely blurs it)."""
    y, x = torch.meshgrid(torch.arange(size) / size, torch.arange(size) / size, indexing="ij")
    chans = [
        torch.sin(2 * math.pi * (x + 0.3 * c)) * torch.cos(math.pi * (y - 0.2 * c)) for c in range(channels)
    ]
    return (torch.stack(chans)[None] + 1) / 2  # (1, C, H, W) in [0, 1]


def _marker(height: int = 32, width: int = 40, x: int = 20, y: int = 12) -> torch.Tensor:
    img = torch.zeros(1, 1, height, width)
    img[0, 0, y, x] = 1.0
    return img


def _peak(img: torch.Tensor) -> tuple[int, int]:
    """(x, y) of the brightest pixel."""
    flat = int(img[0, 0].argmax())
    return flat % img.shape[-1], flat // img.shape[-1]


# ---- smoke / exceptions ------------------------------------------------------------------------


def test_identity_returns_input() -> None:
    img = torch.rand(2, 3, 16, 20)
    assert warp_2d(img, Motion2D()) is img
    assert Motion2D().is_identity()
    assert not Motion2D(zoom=1.01).is_identity()


def test_near_identity_matrix_reproduces_input() -> None:
    img = torch.rand(1, 3, 16, 20)
    out = warp_2d(img, Motion2D(translate_x=1e-9), sampling="bilinear")
    torch.testing.assert_close(out, img, atol=1e-5, rtol=0)


@pytest.mark.parametrize("shape", [(3, 16, 16), (1, 1, 3, 16, 16), (16,)])
def test_bad_shape_raises(shape: tuple[int, ...]) -> None:
    with pytest.raises(ShapeError, match="expected \\(B, C, H, W\\)"):
        warp_2d(torch.zeros(shape), Motion2D(translate_x=1.0))


def test_bad_modes_and_motion_raise() -> None:
    img = torch.rand(1, 3, 8, 8)
    with pytest.raises(ValueError, match="unknown padding mode"):
        warp_2d(img, Motion2D(translate_x=1.0), infill="zeros")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown sampling mode"):
        warp_2d(img, Motion2D(translate_x=1.0), sampling="area")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="zoom must be > 0"):
        Motion2D(zoom=0.0)
    with pytest.raises(ValueError, match="finite"):
        Motion2D(rotate=math.nan)


def test_check_shape_message() -> None:
    with pytest.raises(ShapeError, match=r"^expected \(B, 3, H, W\), got \(1, 4, 64, 64\)$"):
        check_shape(torch.zeros(1, 4, 64, 64), "B 3 H W")
    with pytest.raises(ShapeError):
        check_shape(torch.zeros(2, 3, 8, 9), "N 3 S S")  # a repeated name must repeat its size
    check_shape(torch.zeros(2, 3, 8, 8), "N 3 S S")


# ---- known answers -----------------------------------------------------------------------------


def test_translate_moves_marker_right_and_down_for_negative_y() -> None:
    img = _marker(x=20, y=12)
    for sampling in ("nearest", "bilinear", "bicubic"):
        out = warp_2d(img, Motion2D(translate_x=7.0, translate_y=-3.0), infill="black", sampling=sampling)
        assert _peak(out) == (27, 15), sampling  # +y is up, so -3 moves the marker 3 px down
        assert out[0, 0, 15, 27] == pytest.approx(1.0, abs=1e-4)
        assert out.sum() == pytest.approx(1.0, abs=1e-4)


def test_positive_translate_y_moves_content_up() -> None:
    out = warp_2d(_marker(x=20, y=12), Motion2D(translate_y=5.0), infill="black", sampling="nearest")
    assert _peak(out) == (20, 7)


def test_nearest_integer_translation_is_exact() -> None:
    img = torch.rand(1, 3, 24, 32)
    out = warp_2d(img, Motion2D(translate_x=4.0, translate_y=2.0), infill="black", sampling="nearest")
    assert torch.equal(out[..., :-2, 4:], img[..., 2:, :-4])


def test_bilinear_and_bicubic_integer_translation_match_a_roll() -> None:
    img = torch.rand(1, 3, 24, 32)
    for sampling in ("bilinear", "bicubic"):
        out = warp_2d(img, Motion2D(translate_x=-5.0, translate_y=3.0), infill="wrap", sampling=sampling)
        torch.testing.assert_close(out, torch.roll(img, shifts=(-3, -5), dims=(2, 3)), atol=1e-4, rtol=0)


def test_rotate_90_equals_rot90_ccw() -> None:
    img = torch.rand(1, 3, 32, 32)
    out = warp_2d(img, Motion2D(rotate=90.0), infill="black")
    torch.testing.assert_close(out, torch.rot90(img, 1, (2, 3)), atol=1e-4, rtol=0)


def test_four_frames_of_22_5_degrees_equal_rot90_in_the_interior() -> None:
    img = _smooth(64)
    out = img
    for _ in range(4):
        out = warp_2d(out, Motion2D(rotate=22.5), infill="black")
    expected = torch.rot90(img, 1, (2, 3))
    y, x = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    inside = ((x - 31.5) ** 2 + (y - 31.5) ** 2) < 29.0**2  # the disc every rotation maps onto itself
    err = (out - expected).abs()[..., inside]
    assert err.max() < 0.02
    assert err.mean() < 0.005


def test_zoom_2_maps_centre_quarter_to_full_frame() -> None:
    img = torch.rand(1, 3, 64, 64)
    out = warp_2d(img, Motion2D(zoom=2.0), infill="black")
    # The centre quarter is pixels 16..47; its area-consistent 2x upsampling is exactly this map.
    expected = F.interpolate(img[..., 16:48, 16:48], scale_factor=2, mode="bilinear", align_corners=False)
    torch.testing.assert_close(out[..., 1:-1, 1:-1], expected[..., 1:-1, 1:-1], atol=1e-5, rtol=0)


def test_zoom_out_then_in_round_trips_inside() -> None:
    img = _smooth(48)
    out = warp_2d(warp_2d(img, Motion2D(zoom=0.8, rotate=10.0)), Motion2D(zoom=1.25, rotate=-10.0))
    # Not exactly M then M^-1 (translate-first order), but with no translation it is.
    torch.testing.assert_close(out[..., 8:-8, 8:-8], img[..., 8:-8, 8:-8], atol=0.01, rtol=0)


def test_matrix_order_translates_before_zoom() -> None:
    m = motion_matrix(Motion2D(translate_x=2.0, zoom=2.0), 9, 9, dtype=torch.float64)
    centre = torch.tensor([4.0, 4.0, 1.0], dtype=torch.float64)
    # The centre pixel is first moved 2 px right, then the offset is doubled by the zoom.
    torch.testing.assert_close(m[0] @ centre, torch.tensor([8.0, 4.0, 1.0], dtype=torch.float64))


# ---- infill modes ------------------------------------------------------------------------------


def _shift_right(img: torch.Tensor, infill: str) -> torch.Tensor:
    return warp_2d(img, Motion2D(translate_x=7.0), infill=infill, sampling="bilinear")  # type: ignore[arg-type]


def test_infill_wrap_brings_in_the_opposite_edge() -> None:
    img = torch.rand(1, 3, 16, 24)
    out = _shift_right(img, "wrap")
    torch.testing.assert_close(out[..., :7], img[..., -7:], atol=1e-5, rtol=0)
    torch.testing.assert_close(out[..., 7:], img[..., :-7], atol=1e-5, rtol=0)


def test_infill_wrap_interpolates_across_the_seam() -> None:
    img = torch.rand(1, 3, 16, 24)
    out = warp_2d(img, Motion2D(translate_x=0.5, translate_y=-0.5), infill="wrap")
    rolled = (img + torch.roll(img, 1, 3) + torch.roll(img, 1, 2) + torch.roll(img, (1, 1), (2, 3))) / 4
    torch.testing.assert_close(out, rolled, atol=1e-5, rtol=0)


def test_infill_mirror_reflects_about_the_edge_pixel() -> None:
    img = torch.rand(1, 3, 16, 24)
    out = _shift_right(img, "mirror")
    torch.testing.assert_close(out[..., :7], img[..., 1:8].flip(-1), atol=1e-5, rtol=0)
    torch.testing.assert_close(out, F.pad(img, (7, 0, 0, 0), mode="reflect")[..., :24], atol=1e-5, rtol=0)


def test_infill_black_is_zero() -> None:
    img = torch.rand(1, 3, 16, 24) + 0.5
    out = _shift_right(img, "black")
    assert torch.all(out[..., :7].abs() < 1e-6)
    torch.testing.assert_close(out[..., 7:], img[..., :-7], atol=1e-5, rtol=0)


def test_infill_smear_repeats_the_edge_pixel() -> None:
    img = torch.rand(1, 3, 16, 24)
    out = _shift_right(img, "smear")
    torch.testing.assert_close(out[..., :7], img[..., :1].expand(-1, -1, -1, 7), atol=1e-5, rtol=0)


def test_infill_in_y_and_far_outside() -> None:
    img = torch.rand(1, 1, 10, 12)
    down = warp_2d(img, Motion2D(translate_y=-4.0), infill="wrap", sampling="nearest")
    assert torch.equal(down, torch.roll(img, 4, 2))
    far = warp_2d(img, Motion2D(translate_x=25.0), infill="wrap", sampling="nearest")  # > 2 widths
    assert torch.equal(far, torch.roll(img, 25, 3))


def test_mode_mapping_is_total() -> None:
    assert grid_sample_padding("mirror") == "reflection"
    assert grid_sample_padding("smear") == "border"
    assert grid_sample_padding("black") == "zeros"
    assert cutout_padding("clamp") == "smear"
    assert cutout_padding("wrap") == "wrap"


def test_sample_pixels_identity_grid() -> None:
    img = torch.rand(2, 3, 5, 7)
    y, x = torch.meshgrid(torch.arange(5.0), torch.arange(7.0), indexing="ij")
    grid = torch.stack([x, y], -1)[None].expand(2, -1, -1, -1)
    for padding in ("mirror", "wrap", "black", "smear"):
        out = sample_pixels(img, grid, padding=padding)
        torch.testing.assert_close(out, img, atol=1e-6, rtol=0)


# ---- gradients, dtype, batch -------------------------------------------------------------------


def test_gradient_reaches_input() -> None:
    img = torch.rand(1, 3, 16, 16, requires_grad=True)
    warp_2d(img, Motion2D(translate_x=1.5, rotate=5.0, zoom=1.1), infill="mirror").square().sum().backward()
    assert img.grad is not None and img.grad.abs().sum() > 0


@pytest.mark.parametrize("infill", ["mirror", "wrap", "black", "smear"])
def test_gradcheck(infill: str) -> None:
    img = torch.rand(1, 2, 6, 7, dtype=torch.float64, requires_grad=True)
    motion = Motion2D(translate_x=0.7, translate_y=-1.3, rotate=12.0, zoom=1.2)
    assert torch.autograd.gradcheck(lambda x: warp_2d(x, motion, infill=infill), (img,))  # type: ignore[arg-type]


def test_batch_dtype_and_device_follow_input() -> None:
    img = torch.rand(3, 4, 12, 10, dtype=torch.float64)
    out = warp_2d(img, Motion2D(translate_x=2.0, rotate=3.0))
    assert out.shape == img.shape and out.dtype == torch.float64 and out.device == img.device
    torch.testing.assert_close(out[1:2], warp_2d(img[1:2], Motion2D(translate_x=2.0, rotate=3.0)))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_image_is_sampled_with_float32_coordinates(dtype: torch.dtype) -> None:
    img = torch.rand(1, 3, 40, 600)
    out = warp_2d(img.to(dtype), Motion2D(translate_x=3.0), infill="wrap", sampling="nearest")
    assert out.dtype == dtype
    assert torch.equal(out, torch.roll(img, 3, 3).to(dtype))  # exact: the coordinates were not rounded


@pytest.mark.parametrize("padding", ["mirror", "wrap", "black", "smear"])
def test_sample_affine_cell_identity_and_shift(padding: str) -> None:
    img = torch.rand(1, 3, 6, 8)
    cells_to_pixels = torch.tensor([[[4.0, 0.0, 3.5], [0.0, 3.0, 2.5], [0.0, 0.0, 1.0]]])  # (u+1)*W/2 - 0.5
    out = sample_affine(img, cells_to_pixels, (6, 8), padding=padding)  # type: ignore[arg-type]
    torch.testing.assert_close(out, img, atol=1e-5, rtol=0)
    shifted = cells_to_pixels.clone()
    shifted[0, 0, 2] -= 2.0  # sample 2 px to the left: content moves right, like warp_2d
    out = sample_affine(img.expand(2, -1, -1, -1), shifted.expand(2, -1, -1), (6, 8), padding=padding)  # type: ignore[arg-type]
    expected = warp_2d(img, Motion2D(translate_x=2.0), infill=padding)  # type: ignore[arg-type]
    torch.testing.assert_close(out, expected.expand(2, -1, -1, -1), atol=1e-5, rtol=0)
