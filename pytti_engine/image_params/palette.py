"""Limited palette (PyTTI's ``PixelImage``): every pixel picks a palette and a brightness step in it.

Parameters (PyTTI's, renamed):

- ``palette``: (K, S, 3), K palettes of S colours, in ``[0, PALETTE_INERTIA]`` (shown divided by it);
- ``value``: (1, 1, h, w) brightness in ``[0, 1]``, which picks the colour step within a palette;
- ``logits``: (1, K, h, w) palette choice, ``>= 0``.

The forward image is truly limited: each pixel shows colour ``round(value·(S-1))`` of its ``argmax``
palette, so an image holds at most ``K·S`` colours. The gradient flows through a soft version instead
(the softmax over palettes of the linear interpolation between neighbouring colours, averaged with the
hard one, as PyTTI does with ``replace_grad``). Within each palette colours are sorted by HSP
brightness (``0.299R² + 0.587G² + 0.114B²``) before use, so ``value`` means "brightness".

Two regularisers (PyTTI's): the HDR loss pulls the palette's brightness ramp toward
``linspace(0, 1, S) ** gamma``; the palette normalization loss decorrelates the palettes' use across
pixels and keeps each palette in use.

Difference from PyTTI: the grey initial palettes are ``2·linspace(0, 1, S) ** gamma`` (PyTTI raises
``linspace(0, 2, S)`` to ``gamma``, which for ``gamma != 1`` does not match its own HDR target), and an
init image is fitted with 100 Adam steps instead of 201.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from pytti_engine.checks import check_shape
from pytti_engine.image_params.base import ImageConfig
from pytti_engine.image_params.ema import TensorEMA
from pytti_engine.image_params.rgb import upscale
from pytti_engine.losses import hsv_target, replace_grad

PALETTE_INERTIA = 2.0
"""Palette parameters live in ``[0, 2]`` and are shown halved: a smaller effective learning rate."""
ENCODE_STEPS = 100
ENCODE_LR = 0.1
_HSP = (0.299, 0.587, 0.114)


def sort_palette(palette: Tensor) -> Tensor:
    """Palettes in display range, each sorted by HSP brightness.

    Args:
        palette: (K, S, 3) raw palette parameters in ``[0, PALETTE_INERTIA]``.

    Returns:
        (K, S, 3) colours in ``[0, 1]``, darkest first within each palette.
    """
    check_shape(palette, "K S 3")
    colours = (palette / PALETTE_INERTIA).clamp(0, 1)
    weights = colours.new_tensor(_HSP)
    order = (colours.square() * weights).sum(-1).argsort(dim=1)  # (K, S)
    return colours.gather(1, order[..., None].expand(-1, -1, 3))


def palette_decode(colours: Tensor, value: Tensor, logits: Tensor) -> tuple[Tensor, Tensor]:
    """The hard (limited) image and the soft image whose gradient training uses.

    Args:
        colours: (K, S, 3) sorted palettes in ``[0, 1]``.
        value: (1, 1, h, w) brightness in ``[0, 1]``.
        logits: (1, K, h, w) palette choice.

    Returns:
        ``(hard, soft)``, each (1, 3, h, w): ``hard`` uses colour ``round(value·(S-1))`` of the argmax
        palette; ``soft`` is the softmax-weighted linear interpolation between neighbouring colours.
    """
    k, s, _ = colours.shape
    check_shape(value, "1 1 h w")
    check_shape(logits, f"1 {k} h w")
    h, w = value.shape[-2:]
    v = value.clamp(0, 1) * (s - 1)  # (1, 1, h, w)
    flat = colours.reshape(k * s, 3)
    index = logits.argmax(dim=1) * s + v.round().long()[:, 0]  # (1, h, w)
    # Gather from the (3, K·S) table so the result is contiguous (1, 3, h, w): a transposed view would
    # make every later op (TV, cutouts) run on channels-last strides, several times slower on the CPU.
    hard = flat.T.contiguous().index_select(1, index.reshape(-1)).reshape(1, 3, h, w)
    # soft[c] = sum_k sum_s softmax_k · hat_s(v) · colours[k, s, c], as one (S·3, K) @ (K, h·w) matmul.
    weights = logits.softmax(dim=1).reshape(k, h * w)  # (K, hw)
    mixed = (flat.reshape(k, s * 3).T @ weights).reshape(s, 3, h * w)  # (S, 3, hw)
    steps = torch.arange(s, device=v.device, dtype=v.dtype).view(s, 1)
    hat = (1 - (v.reshape(1, h * w) - steps).abs()).clamp(min=0)  # (S, hw) linear interpolation weights
    soft = (mixed * hat[:, None, :]).sum(0).reshape(1, 3, h, w)
    return hard, soft


def hdr_loss(colours: Tensor, gamma: float) -> Tensor:
    """MSE between each palette's HSP norms and the ramp ``linspace(0, 1, S) ** gamma``.

    Args:
        colours: (K, S, 3) sorted palettes in ``[0, 1]``.
        gamma: the ramp's exponent.

    Returns:
        Scalar loss.
    """
    check_shape(colours, "K S 3")
    norms = (colours * colours.new_tensor(_HSP).sqrt()).norm(dim=-1)  # (K, S)
    ramp = torch.linspace(0, 1, colours.shape[1], device=colours.device, dtype=colours.dtype) ** gamma
    return F.mse_loss(norms, ramp.expand_as(norms))


def palette_normalization_loss(logits: Tensor) -> Tensor:
    """PyTTI's ``PalletLoss``: mean off-diagonal correlation of palette use plus ``mean(1 / (σ·N))``.

    Args:
        logits: (1, K, h, w) palette choice; K >= 2.

    Returns:
        Scalar loss (0 for a single palette).
    """
    k = logits.shape[1]
    if k < 2:
        return logits.new_zeros(())
    use = logits.reshape(k, -1).softmax(dim=0)  # (K, N) per-pixel palette weights
    n = use.shape[1]
    sigma = use.std(dim=1, keepdim=True).clamp(min=1e-8)  # (K, 1)
    centred = use - use.mean(dim=1, keepdim=True)
    corr = (centred @ centred.T) / (sigma * sigma.T * n)  # (K, K)
    off_diagonal = corr - torch.diag(corr.diagonal())
    return off_diagonal.mean() + (sigma * n).reciprocal().mean()


class PaletteImage:
    """The limited-palette image model.

    Args:
        config: image config (palette settings, ``pixel_size``, ``ema_decay``).
        generator: draws the initial brightness, palette choice and (if asked) palettes.
        device: where the parameters live.
    """

    kind = "limited_palette"
    default_learning_rate = 0.02

    def __init__(self, config: ImageConfig, generator: torch.Generator, device: torch.device) -> None:
        self.config = config
        k, s = config.palettes, config.palette_size
        h, w = config.grid
        if config.random_initial_palette:
            palette = torch.rand(k, s, 3, generator=generator) * PALETTE_INERTIA
        else:
            ramp = torch.linspace(0, 1, s) ** config.gamma * PALETTE_INERTIA
            palette = ramp.view(1, s, 1).expand(k, s, 3).clone()
        value = torch.rand(1, 1, h, w, generator=generator)
        logits = torch.rand(1, k, h, w, generator=generator)
        self.palette = palette.to(device).requires_grad_(True)
        self.value = value.to(device).requires_grad_(True)
        self.logits = logits.to(device).requires_grad_(True)
        self.target: Tensor | None = None
        if config.lock_palette:
            self.target = sort_palette(self.palette.detach())
        self.ema = None if config.ema_decay is None else TensorEMA(self.parameters(), config.ema_decay)

    @property
    def height(self) -> int:
        """Output height in pixels."""
        return self.config.height

    @property
    def width(self) -> int:
        """Output width in pixels."""
        return self.config.width

    def parameters(self) -> list[Tensor]:
        """``[palette, value, logits]``."""
        return [self.palette, self.value, self.logits]

    def spatial_parameters(self) -> list[Tensor]:
        """``[value, logits]`` (the palette does not move with the image)."""
        return [self.value, self.logits]

    def colours(self) -> Tensor:
        """(K, S, 3) the palettes in use: the locked target, or the sorted parameters."""
        return self.target if self.target is not None else sort_palette(self.palette)

    def decode(self) -> Tensor:
        """(1, 3, H, W): hard palette colours forward, soft gradient backward."""
        hard, soft = palette_decode(self.colours(), self.value, self.logits)
        return upscale(replace_grad(hard, 0.5 * (soft + hard)), self.config.pixel_size)

    @torch.no_grad()
    def decode_output(self) -> Tensor:
        """(1, 3, H, W) the hard image, of the EMA parameters when enabled."""
        palette, value, logits = (
            self.parameters() if self.ema is None else self.ema.average(self.parameters())
        )
        colours = self.target if self.target is not None else sort_palette(palette)
        hard, _ = palette_decode(colours, value, logits)
        return upscale(hard, self.config.pixel_size).clone()

    def regularization(self) -> Tensor | None:
        """``hdr_weight · hdr_loss + palette_normalization_weight · normalization loss``."""
        total = self.logits.new_zeros(())
        if self.config.hdr_weight and self.target is None:
            total = total + self.config.hdr_weight * hdr_loss(sort_palette(self.palette), self.config.gamma)
        if self.config.palette_normalization_weight:
            total = total + self.config.palette_normalization_weight * palette_normalization_loss(self.logits)
        return total

    @torch.no_grad()
    def project_(self) -> None:
        """Clamp palette to ``[0, 2]``, value to ``[0, 1]``, logits to ``>= 0``."""
        self.palette.clamp_(0, PALETTE_INERTIA)
        self.value.clamp_(0, 1)
        self.logits.clamp_(min=0)

    def update_average_(self) -> None:
        """Advance the EMA (no-op without one)."""
        if self.ema is not None:
            self.ema.update_(self.parameters())

    def encode(self, pixels: Tensor) -> None:
        """Fit the image to a (1, 3, H, W) picture (PyTTI's smart encode); resets the EMA.

        ``value`` is set to the picture's HSP brightness; then palettes (unless locked) and palette
        choice take ``ENCODE_STEPS`` Adam steps against the HSV error, with the HDR weight at 0.01.
        """
        check_shape(pixels, "1 3 H W")
        target = pixels.to(self.value).clamp(0, 1)
        grid = F.avg_pool2d(target, self.config.pixel_size) if self.config.pixel_size > 1 else target
        weights = grid.new_tensor(_HSP).view(1, 3, 1, 1)
        with torch.no_grad():
            self.value.copy_((grid.square() * weights).sum(1, keepdim=True).sqrt().clamp(0, 1))
        goal = hsv_target(target)
        params = [self.logits] if self.target is not None else [self.palette, self.logits]
        optimizer = torch.optim.Adam(params, lr=ENCODE_LR, foreach=False)
        for _ in range(ENCODE_STEPS):
            optimizer.zero_grad(set_to_none=True)
            loss = F.mse_loss(hsv_target(self.decode()), goal)
            if self.target is None:
                loss = loss + 0.01 * hdr_loss(sort_palette(self.palette), self.config.gamma)
            if self.config.palette_normalization_weight:
                loss = loss + self.config.palette_normalization_weight * palette_normalization_loss(
                    self.logits
                )
            loss.backward()
            optimizer.step()
            self.project_()
        for p in self.parameters():
            p.grad = None
        if self.ema is not None:
            self.ema.reset_()

    @torch.no_grad()
    def encode_region(self, pixels: Tensor, mask: Tensor) -> None:
        """Re-encode only where ``mask`` is 1, with the palettes as they are (video occlusions).

        No optimization and no palette change: ``value`` takes the picture's HSP brightness there, and each
        pixel there picks the palette whose colour at that brightness is nearest the picture's in PyTTI's
        HSV space (``[R, G, B, S, V]``), with the confidence (largest logit) typical of the image. The EMA
        of brightness and palette choice restarts there and survives everywhere else.

        Args:
            pixels: (1, 3, H, W) picture in [0, 1].
            mask: (1, 1, H, W) in [0, 1]; a model pixel is re-encoded when its area mean is >= 0.5.
        """
        check_shape(pixels, "1 3 H W")
        check_shape(mask, "1 1 H W")
        p = self.config.pixel_size
        target = pixels.to(self.value).clamp(0, 1)
        grid = F.avg_pool2d(target, p) if p > 1 else target
        region = (F.avg_pool2d(mask.to(self.value), p) if p > 1 else mask.to(self.value)) >= 0.5  # (1,1,h,w)
        if not bool(region.any()):
            return
        weights = grid.new_tensor(_HSP).view(1, 3, 1, 1)
        value = (grid.square() * weights).sum(1, keepdim=True).sqrt().clamp(0, 1)
        colours = self.colours()  # (K, S, 3)
        k, s, _ = colours.shape
        step = (value * (s - 1)).round().long()[0, 0]  # (h, w)
        candidates = colours[:, step].permute(0, 3, 1, 2)  # (K, 3, h, w): each palette's colour there
        error = (hsv_target(candidates) - hsv_target(grid)).square().sum(1)  # (K, h, w)
        best = F.one_hot(error.argmin(0), k).permute(2, 0, 1)[None].to(self.logits)  # (1, K, h, w)
        confidence = self.logits.amax(dim=1).mean().clamp(min=1.0)
        logits = best * confidence
        mask_value, mask_logits = region.to(self.value), region.to(self.logits)
        self.value.copy_(torch.lerp(self.value, value, mask_value))
        self.logits.copy_(torch.lerp(self.logits, logits, mask_logits))
        if self.ema is not None:
            self.ema.blend_(1, value, mask_value)
            self.ema.blend_(2, logits, mask_logits)

    def set_target_palette(self, pixels: Tensor, generator: torch.Generator) -> None:
        """Fit a copy of this image to ``pixels`` and lock its sorted palette (``target_palette``)."""
        fit = PaletteImage(
            ImageConfig(**{**self.config.to_dict(), "lock_palette": False, "ema_decay": None}),
            generator,
            self.value.device,
        )
        fit.encode(pixels)
        with torch.no_grad():
            self.target = sort_palette(fit.palette.detach())
            self.palette.copy_(self.target * PALETTE_INERTIA)

    @torch.no_grad()
    def apply_warp(self, warp: Callable[[Tensor], Tensor]) -> None:
        """Warp brightness and palette choice (and their EMA) in place; the palette stays."""
        self.value.copy_(warp(self.value).clamp_(0, 1))
        self.logits.copy_(warp(self.logits).clamp_(min=0))
        if self.ema is not None:
            self.ema.warp_([1, 2], warp)

    def state_dict(self) -> dict[str, Tensor]:
        """Parameters, the locked target palette (if any) and the EMA buffers (CPU copies)."""
        out = {
            name: t.detach().cpu().clone()
            for name, t in zip(("palette", "value", "logits"), self.parameters(), strict=True)
        }
        if self.target is not None:
            out["target"] = self.target.detach().cpu().clone()
        if self.ema is not None:
            out.update(self.ema.state_dict())
        return out

    @torch.no_grad()
    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        """Restore from :meth:`state_dict`."""
        for name, t in zip(("palette", "value", "logits"), self.parameters(), strict=True):
            if state[name].shape != t.shape:
                raise ValueError(
                    f"checkpoint {name} is {tuple(state[name].shape)}, expected {tuple(t.shape)}"
                )
            t.copy_(state[name].to(t.device, t.dtype))
        target = state.get("target")
        self.target = None if target is None else target.to(self.palette.device, self.palette.dtype)
        if self.ema is not None:
            self.ema.load_state_dict(state)
