"""Unlimited palette: one free RGB value per pixel."""

from __future__ import annotations

from collections.abc import Callable

import torch

from pytti_engine.checks import check_shape


class RGBImage:
    """RGB pixels in [0, 1] as a single (1, 3, H, W) leaf tensor.

    Args:
        pixels: (1, 3, H, W) initial image in [0, 1]; copied into a new leaf tensor.
    """

    kind = "rgb"

    def __init__(self, pixels: torch.Tensor) -> None:
        check_shape(pixels, "1 3 H W")
        self.pixels = pixels.detach().clone().clamp_(0, 1).requires_grad_(True)

    @property
    def height(self) -> int:
        """Image height in pixels."""
        return int(self.pixels.shape[-2])

    @property
    def width(self) -> int:
        """Image width in pixels."""
        return int(self.pixels.shape[-1])

    def parameters(self) -> list[torch.Tensor]:
        """The pixel tensor."""
        return [self.pixels]

    def decode(self) -> torch.Tensor:
        """(1, 3, H, W) in [0, 1]; the parameters are kept in range by :meth:`project_`."""
        return self.pixels

    @torch.no_grad()
    def project_(self) -> None:
        """Clamp the pixels to [0, 1] in place."""
        self.pixels.clamp_(0, 1)

    @torch.no_grad()
    def apply_warp(self, warp: Callable[[torch.Tensor], torch.Tensor]) -> None:
        """Warp the pixels in place (the tensor object stays the optimizer's parameter)."""
        self.pixels.copy_(warp(self.pixels).clamp_(0, 1))

    def state_dict(self) -> dict[str, torch.Tensor]:
        """``{"pixels": (1, 3, H, W)}`` (a detached CPU copy)."""
        return {"pixels": self.pixels.detach().cpu().clone()}

    @torch.no_grad()
    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore the pixels from :meth:`state_dict`."""
        pixels = state["pixels"]
        check_shape(pixels, "1 3 H W")
        if pixels.shape != self.pixels.shape:
            raise ValueError(
                f"checkpoint image is {tuple(pixels.shape)}, expected {tuple(self.pixels.shape)}"
            )
        self.pixels.copy_(pixels.to(self.pixels.device, self.pixels.dtype))
