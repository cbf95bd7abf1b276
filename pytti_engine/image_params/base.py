"""The interface every image model implements, and the config that builds one.

An image model ("image parameterization") owns the tensors the optimizer changes and turns them into
the (1, 3, H, W) picture the losses see. The interface is shaped so that a latent model (VQGAN) fits:
``encode`` maps a picture into the parameters (an encoder for VQGAN), ``decode`` maps them back (a
decoder), ``default_learning_rate`` differs per model, and ``state_dict`` holds every tensor needed to
resume exactly (parameters, EMA, locked palettes).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

import torch

ImageModelName = Literal["unlimited_palette", "limited_palette", "vqgan"]
VQGANWarp = Literal["pixels", "latent"]


@dataclass(frozen=True)
class ImageConfig:
    """What builds an image model (names as in the scene file).

    Attributes:
        image_model: ``unlimited_palette`` (free RGB) or ``limited_palette`` (palettes + brightness).
        width: output width in pixels (a multiple of ``pixel_size``).
        height: output height in pixels (a multiple of ``pixel_size``).
        pixel_size: output pixels per model pixel (nearest upscale).
        palette_size: limited_palette: colours per palette.
        palettes: limited_palette: number of palettes.
        gamma: limited_palette: brightness curve of the initial palettes and of the HDR loss.
        hdr_weight: limited_palette: weight of the HDR palette loss.
        palette_normalization_weight: limited_palette: weight of the palette normalization loss.
        random_initial_palette: limited_palette: uniform random palettes instead of grey ramps.
        lock_palette: limited_palette: freeze the initial (or target) palette.
        ema_decay: decay of the parameter EMA that output frames show; ``None`` = no EMA.
        vqgan_model: vqgan: the model's name (``imagenet``, ... or ``custom``).
        vqgan_warp: vqgan: ``pixels`` (decode, warp, re-encode: PyTTI's) or ``latent`` (warp the latent
            grid).
    """

    image_model: ImageModelName = "unlimited_palette"
    width: int = 256
    height: int = 256
    pixel_size: int = 1
    palette_size: int = 5
    palettes: int = 20
    gamma: float = 1.0
    hdr_weight: float = 0.01
    palette_normalization_weight: float = 0.2
    random_initial_palette: bool = False
    lock_palette: bool = False
    ema_decay: float | None = None
    vqgan_model: str | None = None
    vqgan_warp: VQGANWarp = "pixels"

    def __post_init__(self) -> None:
        if self.pixel_size < 1 or self.width % self.pixel_size or self.height % self.pixel_size:
            raise ValueError(
                f"width {self.width} and height {self.height} must be multiples of pixel_size {self.pixel_size}"
            )
        if self.palette_size < 1 or self.palettes < 1:
            raise ValueError("palette_size and palettes must be >= 1")
        if self.ema_decay is not None and not 0 <= self.ema_decay < 1:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay}")

    @property
    def grid(self) -> tuple[int, int]:
        """(height, width) of the model's pixel grid."""
        return self.height // self.pixel_size, self.width // self.pixel_size

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly values (stored in checkpoints); the VQGAN fields only for a VQGAN."""
        out = dict(self.__dict__)
        if self.image_model != "vqgan":
            for name in _VQGAN_FIELDS:
                del out[name]
        return out


_VQGAN_FIELDS = ("vqgan_model", "vqgan_warp")


class ImageParam(Protocol):
    """An optimizer-bound image.

    ``decode()`` gives the (1, 3, H, W) image in [0, 1] that the losses see, differentiable w.r.t.
    ``parameters()``; ``decode_output()`` the picture written to disk (the EMA when enabled).
    ``apply_warp`` moves the spatial content between frames. ``state_dict``/``load_state_dict`` make a
    frame exact to resume.
    """

    kind: str
    default_learning_rate: float
    config: ImageConfig

    def parameters(self) -> list[torch.Tensor]:
        """The leaf tensors the optimizer updates."""
        ...

    def spatial_parameters(self) -> list[torch.Tensor]:
        """The parameters laid out as (1, C, h, w) grids, which warps move (a subset of ``parameters``)."""
        ...

    def decode(self) -> torch.Tensor:
        """(1, 3, H, W) image in [0, 1], differentiable."""
        ...

    def decode_output(self) -> torch.Tensor:
        """(1, 3, H, W) image in [0, 1] for output (the EMA when enabled), detached."""
        ...

    def encode(self, pixels: torch.Tensor) -> None:
        """Set the parameters so that the image looks like ``pixels`` (1, 3, H, W); resets the EMA."""
        ...

    def regularization(self) -> torch.Tensor | None:
        """The model's own weighted losses (palette losses), or ``None``."""
        ...

    def project_(self) -> None:
        """Bring the parameters back into their valid range after an optimizer step (in place)."""
        ...

    def update_average_(self) -> None:
        """Advance the output EMA by the current parameters (no-op without EMA)."""
        ...

    def apply_warp(self, warp: Callable[[torch.Tensor], torch.Tensor]) -> None:
        """Replace every spatial parameter (and its EMA) ``p`` by ``warp(p)`` in place."""
        ...

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Tensors that fully describe the image (CPU copies)."""
        ...

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore from :meth:`state_dict`."""
        ...


@runtime_checkable
class RegionEncodable(Protocol):
    """An image model that can re-encode part of itself, keeping everything global (palette, EMA)."""

    def encode_region(self, pixels: torch.Tensor, mask: torch.Tensor) -> None:
        """Look like ``pixels`` (1, 3, H, W) where ``mask`` (1, 1, H, W) is 1, unchanged where it is 0."""
        ...


@torch.no_grad()
def encode_region(image: ImageParam, pixels: torch.Tensor, mask: torch.Tensor) -> None:
    """Re-encode ``image`` from ``pixels`` only where ``mask`` is 1 (video mode's occluded pixels).

    A model with its own ``encode_region`` (:class:`RegionEncodable`: RGB, limited palette) keeps its
    palette and the EMA outside the mask. Any other model gets the simple default: ``encode`` of the
    blend ``decode() · (1 - mask) + pixels · mask`` (which for most models resets their EMA).

    Args:
        image: the image model.
        pixels: (1, 3, H, W) picture in [0, 1].
        mask: (1, 1, H, W) in [0, 1].
    """
    if isinstance(image, RegionEncodable):
        image.encode_region(pixels, mask)
        return
    image.encode(torch.lerp(image.decode().detach(), pixels.to(image.decode().dtype), mask))
