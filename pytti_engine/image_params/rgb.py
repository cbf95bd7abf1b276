"""Unlimited palette: one free RGB value per model pixel, shown ``pixel_size`` output pixels wide."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from pytti_engine.checks import check_shape
from pytti_engine.image_params.base import ImageConfig
from pytti_engine.image_params.ema import TensorEMA


def upscale(grid: torch.Tensor, pixel_size: int) -> torch.Tensor:
    """Nearest-neighbour upscale of a (B, C, h, w) grid to (B, C, h·p, w·p) (identity for p = 1)."""
    if pixel_size == 1:
        return grid
    return grid.repeat_interleave(pixel_size, dim=-2).repeat_interleave(pixel_size, dim=-1)


class RGBImage:
    """RGB pixels in [0, 1] as a single (1, 3, h, w) leaf tensor, h = height / pixel_size.

    Args:
        pixels: (1, 3, H, W) initial image in [0, 1] at the *output* size; area-downsampled to the grid
            when ``pixel_size > 1``.
        config: the image config (``pixel_size``, ``ema_decay``); default: 1 and no EMA.
    """

    kind = "rgb"
    default_learning_rate = 0.02

    def __init__(self, pixels: torch.Tensor, config: ImageConfig | None = None) -> None:
        check_shape(pixels, "1 3 H W")
        height, width = int(pixels.shape[-2]), int(pixels.shape[-1])
        self.config = config or ImageConfig(width=width, height=height)
        if (self.config.height, self.config.width) != (height, width):
            raise ValueError(
                f"pixels are {width}x{height}, config says {self.config.width}x{self.config.height}"
            )
        self.pixels = self._to_grid(pixels).detach().clone().clamp_(0, 1).requires_grad_(True)
        self.ema = None if self.config.ema_decay is None else TensorEMA([self.pixels], self.config.ema_decay)

    def _to_grid(self, pixels: torch.Tensor) -> torch.Tensor:
        p = self.config.pixel_size
        return pixels if p == 1 else F.avg_pool2d(pixels, p)

    @property
    def height(self) -> int:
        """Output height in pixels."""
        return self.config.height

    @property
    def width(self) -> int:
        """Output width in pixels."""
        return self.config.width

    def parameters(self) -> list[torch.Tensor]:
        """The pixel grid."""
        return [self.pixels]

    def spatial_parameters(self) -> list[torch.Tensor]:
        """The pixel grid (1, 3, h, w)."""
        return [self.pixels]

    def decode(self) -> torch.Tensor:
        """(1, 3, H, W) in [0, 1]; the parameters are kept in range by :meth:`project_`."""
        return upscale(self.pixels, self.config.pixel_size)

    @torch.no_grad()
    def decode_output(self) -> torch.Tensor:
        """(1, 3, H, W): the EMA of the pixels when enabled, else the pixels."""
        grid = self.pixels if self.ema is None else self.ema.average([self.pixels])[0]
        return upscale(grid.detach().clamp(0, 1), self.config.pixel_size).clone()

    @torch.no_grad()
    def encode(self, pixels: torch.Tensor) -> None:
        """Set the grid from a (1, 3, H, W) picture (area-downsampled); resets the EMA."""
        check_shape(pixels, "1 3 H W")
        self.pixels.copy_(self._to_grid(pixels.to(self.pixels)).clamp(0, 1))
        if self.ema is not None:
            self.ema.reset_()

    @torch.no_grad()
    def encode_region(self, pixels: torch.Tensor, mask: torch.Tensor) -> None:
        """Set the grid from ``pixels`` only where ``mask`` is 1 (blended by it); the EMA elsewhere survives.

        Args:
            pixels: (1, 3, H, W) picture in [0, 1].
            mask: (1, 1, H, W) in [0, 1], area-downsampled to the grid like the picture.
        """
        check_shape(pixels, "1 3 H W")
        check_shape(mask, "1 1 H W")
        weight = self._to_grid(mask.to(self.pixels)).clamp(0, 1)
        values = self._to_grid(pixels.to(self.pixels)).clamp(0, 1)
        self.pixels.copy_(torch.lerp(self.pixels, values, weight))
        if self.ema is not None:
            self.ema.blend_(0, values, weight)

    def regularization(self) -> torch.Tensor | None:
        """None: RGB has no losses of its own."""
        return None

    @torch.no_grad()
    def project_(self) -> None:
        """Clamp the pixels to [0, 1] in place."""
        self.pixels.clamp_(0, 1)

    def update_average_(self) -> None:
        """Advance the EMA (no-op without one)."""
        if self.ema is not None:
            self.ema.update_([self.pixels])

    @torch.no_grad()
    def apply_warp(self, warp: Callable[[torch.Tensor], torch.Tensor]) -> None:
        """Warp the pixels (and their EMA) in place (the tensor object stays the optimizer's parameter)."""
        self.pixels.copy_(warp(self.pixels).clamp_(0, 1))
        if self.ema is not None:
            self.ema.warp_([0], warp)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """``{"pixels": (1, 3, h, w)}`` plus the EMA buffers (detached CPU copies)."""
        out = {"pixels": self.pixels.detach().cpu().clone()}
        if self.ema is not None:
            out.update(self.ema.state_dict())
        return out

    @torch.no_grad()
    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore the pixels (and EMA) from :meth:`state_dict`."""
        pixels = state["pixels"]
        check_shape(pixels, "1 3 H W")
        if pixels.shape != self.pixels.shape:
            raise ValueError(
                f"checkpoint image is {tuple(pixels.shape)}, expected {tuple(self.pixels.shape)}"
            )
        self.pixels.copy_(pixels.to(self.pixels.device, self.pixels.dtype))
        if self.ema is not None:
            self.ema.load_state_dict(state)
