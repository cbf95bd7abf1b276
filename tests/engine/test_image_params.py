"""Image models: RGB (with pixel_size), limited palette, EMA; shapes, numerics, gradients, state."""

from __future__ import annotations

import pytest
import torch

from pytti_engine.image_params import ImageConfig, PaletteImage, RGBImage, image_from_state, make_image
from pytti_engine.image_params.ema import TensorEMA
from pytti_engine.image_params.palette import (
    hdr_loss,
    palette_decode,
    palette_normalization_loss,
    sort_palette,
)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


CPU = torch.device("cpu")


def _palette(**kw: object) -> PaletteImage:
    cfg = ImageConfig(image_model="limited_palette", width=16, height=12, palette_size=4, palettes=3, **kw)  # type: ignore[arg-type]
    return PaletteImage(cfg, _gen(), CPU)


def test_rgb_pixel_size_decodes_blocks_and_gradient_reaches_grid() -> None:
    cfg = ImageConfig(width=16, height=8, pixel_size=4)
    image = RGBImage(torch.rand(1, 3, 8, 16, generator=_gen()), cfg)
    assert image.pixels.shape == (1, 3, 2, 4)
    out = image.decode()
    assert out.shape == (1, 3, 8, 16)
    torch.testing.assert_close(out[..., :4, :4], image.pixels[..., :1, :1].expand(1, 3, 4, 4))
    out.sum().backward()
    assert image.pixels.grad is not None
    torch.testing.assert_close(image.pixels.grad, torch.full((1, 3, 2, 4), 16.0))


def test_pixel_size_must_divide_the_size() -> None:
    with pytest.raises(ValueError, match="multiples of pixel_size"):
        ImageConfig(width=10, height=8, pixel_size=4)


def test_rgb_encode_round_trips_a_blocky_picture() -> None:
    cfg = ImageConfig(width=8, height=8, pixel_size=2)
    picture = torch.rand(1, 3, 4, 4, generator=_gen()).repeat_interleave(2, -1).repeat_interleave(2, -2)
    image = RGBImage(torch.zeros(1, 3, 8, 8), cfg)
    image.encode(picture)
    torch.testing.assert_close(image.decode_output(), picture)


def test_sort_palette_orders_by_brightness_and_halves() -> None:
    pal = torch.tensor([[[2.0, 2.0, 2.0], [0.0, 0.0, 0.0], [1.0, 1.0, 1.0]]])  # (1, 3, 3)
    out = sort_palette(pal)
    torch.testing.assert_close(out[0, :, 0], torch.tensor([0.0, 0.5, 1.0]))


def test_palette_decode_hard_uses_argmax_palette_and_rounded_value() -> None:
    colours = torch.stack(
        [torch.linspace(0, 1, 3)[:, None].expand(3, 3), torch.full((3, 3), 0.25)]
    )  # (2,3,3)
    value = torch.tensor([[[[0.0, 0.5, 1.0]]]])  # (1,1,1,3)
    logits = torch.tensor([[[[5.0, 5.0, 0.0]], [[0.0, 0.0, 5.0]]]])  # (1,2,1,3)
    hard, soft = palette_decode(colours, value, logits)
    assert hard.shape == soft.shape == (1, 3, 1, 3)
    torch.testing.assert_close(hard[0, 0, 0], torch.tensor([0.0, 0.5, 0.25]))
    # soft: palette 0 almost surely for the first two pixels; value 0.5 of 3 colours is colour 1 exactly
    assert abs(float(soft[0, 0, 0, 1]) - 0.5) < 0.01


def test_palette_image_uses_at_most_palette_size_times_palettes_colours() -> None:
    image = _palette(random_initial_palette=True)
    out = image.decode().detach()
    assert out.shape == (1, 3, 12, 16)
    colours = torch.unique(out[0].reshape(3, -1).T, dim=0)
    assert len(colours) <= 4 * 3


def test_palette_gradient_reaches_every_parameter() -> None:
    image = _palette()
    loss = image.decode().square().mean()
    reg = image.regularization()
    assert reg is not None
    (loss + reg).backward()
    for p in image.parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0


def test_hdr_loss_is_zero_for_the_target_ramp() -> None:
    grey = torch.linspace(0, 1, 5)[None, :, None].expand(2, 5, 3)
    assert float(hdr_loss(grey, 1.0)) < 1e-10
    assert float(hdr_loss(grey, 2.0)) > 1e-3


def test_palette_normalization_prefers_decorrelated_use() -> None:
    k = 2
    same = torch.zeros(1, k, 8, 8)
    same[:, :, :, :4] = 1.0  # both palettes used the same way: correlated
    split = torch.zeros(1, k, 8, 8)
    split[:, 0, :, :4] = 3.0
    split[:, 1, :, 4:] = 3.0
    assert palette_normalization_loss(split) < palette_normalization_loss(
        same + torch.rand(1, k, 8, 8) * 0.01
    )
    assert float(palette_normalization_loss(torch.rand(1, 1, 4, 4))) == 0.0


def test_palette_encode_fits_a_picture() -> None:
    image = _palette()
    picture = torch.zeros(1, 3, 12, 16)
    picture[:, 0, :, :8] = 1.0  # red left half, black right half
    before = (image.decode_output() - picture).abs().mean()
    image.encode(picture)
    after = (image.decode_output() - picture).abs().mean()
    assert after < before and after < 0.2


def test_lock_palette_freezes_colours() -> None:
    image = _palette(lock_palette=True)
    colours = image.colours().clone()
    opt = torch.optim.Adam(image.parameters(), lr=0.1)
    for _ in range(3):
        opt.zero_grad()
        image.decode().mean().backward()
        opt.step()
        image.project_()
    torch.testing.assert_close(image.colours(), colours)


def test_target_palette_locks_the_pictures_colours() -> None:
    image = _palette()
    picture = torch.zeros(1, 3, 12, 16)
    picture[:, 2] = 1.0  # pure blue
    image.set_target_palette(picture, _gen(1))
    assert image.target is not None
    assert float(image.colours()[..., 2].max()) > 0.5  # some blue in the locked palette


@pytest.mark.parametrize("model", ["unlimited_palette", "limited_palette"])
def test_state_dict_round_trip_is_exact(model: str) -> None:
    cfg = ImageConfig(image_model=model, width=8, height=8, palettes=2, palette_size=3, ema_decay=0.9)  # type: ignore[arg-type]
    image = make_image(cfg, _gen(), CPU)
    opt = torch.optim.Adam(image.parameters(), lr=0.05)
    for _ in range(2):
        opt.zero_grad()
        image.decode().mean().backward()
        opt.step()
        image.project_()
        image.update_average_()
    clone = image_from_state(image.kind, image.config.to_dict(), image.state_dict(), CPU)
    for a, b in zip(image.parameters(), clone.parameters(), strict=True):
        assert torch.equal(a, b)
    assert torch.equal(image.decode_output(), clone.decode_output())


def test_ema_is_bias_corrected_and_warps() -> None:
    x = torch.zeros(1, 1, 2, 2)
    ema = TensorEMA([x], decay=0.5)
    torch.testing.assert_close(ema.average([x])[0], x)  # before any update: the tensor itself
    ema.update_([torch.full_like(x, 2.0)])
    torch.testing.assert_close(ema.average([x])[0], torch.full_like(x, 2.0))  # bias-corrected
    ema.update_([torch.full_like(x, 4.0)])
    torch.testing.assert_close(ema.average([x])[0], torch.full_like(x, (0.5 * 2 * 0.5 + 0.5 * 4) / 0.75))
    ramp = torch.arange(4.0).reshape(1, 1, 2, 2)  # a picture with a left and a right
    ema.update_([ramp])
    before = ema.average([x])[0]
    assert not torch.equal(before, before.flip(-1))
    ema.warp_([0], lambda t: t.flip(-1))  # the average moves with the content, exactly
    torch.testing.assert_close(ema.average([x])[0], before.flip(-1))
    ema.warp_([], lambda t: t * 0)  # only the listed tensors move
    torch.testing.assert_close(ema.average([x])[0], before.flip(-1))


@pytest.mark.parametrize("model", ["unlimited_palette", "limited_palette"])
def test_the_output_ema_moves_with_the_image(model: str) -> None:
    """After a warp, the saved picture (the EMA) is the previous saved picture moved the same way; with
    an EMA that stayed put it would show the content where it was."""
    cfg = ImageConfig(image_model=model, width=8, height=8, palettes=2, palette_size=3, ema_decay=0.9)  # type: ignore[arg-type]
    image = make_image(cfg, _gen(), CPU)
    opt = torch.optim.Adam(image.parameters(), lr=0.1)
    target = torch.rand(1, 3, 8, 8, generator=_gen())
    for _ in range(3):
        opt.zero_grad()
        (image.decode() - target).square().mean().backward()
        opt.step()
        image.project_()
        image.update_average_()
    before = image.decode_output()
    assert not torch.equal(before, image.decode().detach())  # the EMA lags: it is not the raw image
    image.apply_warp(lambda t: torch.roll(t, shifts=3, dims=-1))
    torch.testing.assert_close(image.decode_output(), torch.roll(before, shifts=3, dims=-1))


def test_ema_output_lags_the_parameters() -> None:
    cfg = ImageConfig(width=4, height=4, ema_decay=0.9)
    image = RGBImage(torch.zeros(1, 3, 4, 4), cfg)
    image.update_average_()
    with torch.no_grad():
        image.pixels.fill_(1.0)
    image.update_average_()
    out = image.decode_output()
    assert 0.4 < float(out.mean()) < 0.6
    assert float(image.decode().detach().mean()) == 1.0
