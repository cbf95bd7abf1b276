"""Video mode keeps the palette and the EMA: only occluded pixels are re-encoded (issue 14.3).

The flows are given directly (a zero backward flow with an occluded block), so the tests read exactly
what the re-encode changes: inside the block the picture follows the new source frame, outside it the
image model, its palette and its EMA are as the warp left them.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from pytti_engine.image_params import (
    ImageConfig,
    PaletteImage,
    RegionEncodable,
    RGBImage,
    encode_region,
    make_image,
)
from pytti_engine.state import RenderState, make_optimizer
from pytti_engine.video_source import FrameFlow, VideoSource

H = W = 16
BLOCK = (slice(None), slice(None), slice(4, 8), slice(0, 8))  # the occluded pixels (12.5 %)


def _picture(seed: int) -> torch.Tensor:
    return torch.rand(1, 3, H, W, generator=torch.Generator().manual_seed(seed))


def _video(occluded: torch.Tensor, reencode_each_frame: bool = False) -> VideoSource:
    """Two source frames, and the flow into frame 2: no motion, ``occluded`` (1, 1, H, W) unreliable."""
    frames = (
        (torch.stack([_picture(10), _picture(11)])[:, 0].permute(0, 2, 3, 1) * 255).round().to(torch.uint8)
    )
    flow = FrameFlow(frame=2, backward=torch.zeros(1, 2, H, W), valid=1 - occluded)
    return VideoSource(
        frames=frames.numpy(),
        frame_stride=1,
        estimator=lambda a, b: np.zeros((H, W, 2), np.float32),
        device=torch.device("cpu"),
        reencode_each_frame=reencode_each_frame,
        cache=OrderedDict({2: flow}),
    )


def _block_mask() -> torch.Tensor:
    mask = torch.zeros(1, 1, H, W)
    mask[BLOCK] = 1.0
    return mask


def _palette_state() -> RenderState:
    config = ImageConfig(
        image_model="limited_palette", width=W, height=H, palettes=4, palette_size=4, ema_decay=0.8
    )
    image = make_image(config, torch.Generator().manual_seed(0), torch.device("cpu"))  # random, no fit
    for seed in range(3):  # some history for the EMA
        with torch.no_grad():
            image.value.add_(
                0.05 * torch.randn(image.value.shape, generator=torch.Generator().manual_seed(seed))
            )
        image.project_()
        image.update_average_()
    return RenderState(image=image, optimizer=make_optimizer(image, 0.02))


def _snapshot(image: PaletteImage) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in image.state_dict().items()}


def test_palette_and_ema_survive_an_occlusion() -> None:
    state = _palette_state()
    image = state.image
    assert isinstance(image, PaletteImage)
    before = _snapshot(image)
    source = _video(_block_mask()).source(2)
    error_before = (image.decode().detach() - source)[BLOCK].abs().mean()
    _video(_block_mask()).advance(state, 2, "smear", "bilinear")
    after = _snapshot(image)
    torch.testing.assert_close(after["palette"], before["palette"], atol=0, rtol=0)  # no refit
    torch.testing.assert_close(after["ema.0"], before["ema.0"], atol=0, rtol=0)
    assert float(after["ema.accum"]) == float(before["ema.accum"]) < 1.0  # the EMA was not reset
    outside = torch.ones(1, 1, H, W, dtype=torch.bool)
    outside[BLOCK] = False
    for name in ("value", "logits", "ema.1", "ema.2"):  # brightness, palette choice and their EMA
        torch.testing.assert_close(after[name] * outside, before[name] * outside, atol=1e-5, rtol=0)
        assert not torch.equal(after[name][BLOCK], before[name][BLOCK]), name
    # Inside the block the picture now follows the source (its nearest palette colours) ...
    assert float((image.decode().detach() - source)[BLOCK].abs().mean()) < 0.7 * float(error_before)
    # ... and so does the output (the EMA), which equals the re-encoded picture there.
    torch.testing.assert_close(
        image.decode_output()[BLOCK], image.decode().detach()[BLOCK], atol=1e-6, rtol=0
    )


def test_rgb_keeps_its_ema_outside_the_occlusion() -> None:
    image = RGBImage(_picture(1), ImageConfig(width=W, height=H, ema_decay=0.5))
    image.update_average_()
    with torch.no_grad():
        image.pixels.copy_(_picture(2))
    image.update_average_()
    state = RenderState(image=image, optimizer=make_optimizer(image, 0.02))
    output_before = image.decode_output()
    video = _video(_block_mask())
    video.advance(state, 2, "smear", "bilinear")
    source = video.source(2)
    torch.testing.assert_close(image.decode()[BLOCK], source[BLOCK], atol=1e-6, rtol=0)
    torch.testing.assert_close(image.decode_output()[BLOCK], source[BLOCK], atol=1e-6, rtol=0)
    outside = 1 - _block_mask()
    torch.testing.assert_close(image.decode_output() * outside, output_before * outside, atol=1e-6, rtol=0)
    assert float(image.ema.accum) == 0.25  # type: ignore[union-attr]  # two updates, not reset


def test_reencode_each_frame_keeps_the_palette_and_a_cut_starts_afresh() -> None:
    state = _palette_state()
    image = state.image
    assert isinstance(image, PaletteImage)
    palette = image.palette.detach().clone()
    _video(torch.zeros(1, 1, H, W), reencode_each_frame=True).advance(state, 2, "smear", "bilinear")
    torch.testing.assert_close(image.palette.detach(), palette, atol=0, rtol=0)
    assert image.ema is not None and float(image.ema.accum) < 1.0
    source = _video(torch.zeros(1, 1, H, W)).source(2)
    hsp = (source.square() * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True).sqrt()
    torch.testing.assert_close(image.value.detach(), hsp, atol=1e-5, rtol=0)  # brightness from the source
    # A cut (fewer than 3 % reliable pixels): a new picture, as PyTTI: a full encode (a limited palette
    # refits its palettes there), the EMA restarts.
    rgb = RGBImage(_picture(1), ImageConfig(width=W, height=H, ema_decay=0.5))
    rgb.update_average_()
    cut = RenderState(image=rgb, optimizer=make_optimizer(rgb, 0.02))
    _video(torch.ones(1, 1, H, W)).advance(cut, 2, "smear", "bilinear")
    assert rgb.ema is not None and float(rgb.ema.accum) == 1.0
    torch.testing.assert_close(rgb.decode_output(), source, atol=1e-6, rtol=0)


class _PlainModel:
    """An image model with only ``encode`` (no ``encode_region``), as a new model may start."""

    def __init__(self) -> None:
        self.picture = torch.zeros(1, 3, H, W)
        self.encoded: list[torch.Tensor] = []

    def decode(self) -> torch.Tensor:
        return self.picture

    def encode(self, pixels: torch.Tensor) -> None:
        self.encoded.append(pixels)


@pytest.mark.parametrize("make", [lambda: RGBImage(_picture(0)), lambda: _PlainModel()])
def test_encode_region_falls_back_to_encoding_the_blend(make: Callable[[], object]) -> None:
    model = make()
    source, mask = torch.ones(1, 3, H, W), _block_mask()
    encode_region(model, source, mask)  # type: ignore[arg-type]
    if isinstance(model, RegionEncodable):
        assert isinstance(model, RGBImage)
        torch.testing.assert_close(model.decode(), torch.lerp(_picture(0), source, mask))
    else:
        assert isinstance(model, _PlainModel)
        torch.testing.assert_close(model.encoded[0], mask.expand(1, 3, H, W))


def test_vqgan_reencodes_only_the_occluded_cells(vqgan_models_dir: Path) -> None:
    from pytti_engine.image_params.vqgan import load_vqgan
    from pytti_engine.vqgan_files import find_vqgan_files

    model = load_vqgan(find_vqgan_files("imagenet", vqgan_models_dir))
    config = ImageConfig(image_model="vqgan", width=32, height=32, vqgan_model="imagenet", ema_decay=0.5)
    image = make_image(config, torch.Generator().manual_seed(0), torch.device("cpu"), vqgan=model)
    image.update_average_()
    assert isinstance(image, RegionEncodable)
    z, ema = image.z.detach().clone(), image.ema.biased[0].clone()  # type: ignore[attr-defined]
    mask = torch.zeros(1, 1, 32, 32)
    mask[..., :16, :16] = 1.0  # the top-left latent cell (f = 16)
    source = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    encode_region(image, source, mask)
    after = image.z.detach()  # type: ignore[attr-defined]
    torch.testing.assert_close(after[..., 0, 1:], z[..., 0, 1:])
    torch.testing.assert_close(after[..., 1, :], z[..., 1, :])
    assert not torch.equal(after[..., 0, 0], z[..., 0, 0])
    torch.testing.assert_close(image.ema.biased[0][..., 1, :], ema[..., 1, :])  # type: ignore[attr-defined]
    assert float(image.ema.accum) < 1.0  # type: ignore[attr-defined]  # not reset
