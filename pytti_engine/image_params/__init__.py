"""Image models: what the optimizer actually changes (see :mod:`pytti_engine.image_params.base`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from pytti_engine.image_params.base import (
    ImageConfig,
    ImageModelName,
    ImageParam,
    RegionEncodable,
    encode_region,
)
from pytti_engine.image_params.palette import PaletteImage
from pytti_engine.image_params.rgb import RGBImage

if TYPE_CHECKING:
    from pytti_engine.image_params.vqgan import VQGANModel

__all__ = [
    "ImageConfig",
    "ImageModelName",
    "ImageParam",
    "PaletteImage",
    "RGBImage",
    "RegionEncodable",
    "default_learning_rate",
    "encode_region",
    "image_from_state",
    "make_image",
]


_MODELS: dict[str, type[RGBImage] | type[PaletteImage]] = {
    "unlimited_palette": RGBImage,
    "limited_palette": PaletteImage,
}


def default_learning_rate(image_model: str) -> float:
    """The image model's own Adam learning rate (what a scene's ``learning_rate: null`` means).

    Args:
        image_model: the scene's ``image_model`` name.

    Returns:
        The model class's ``default_learning_rate`` (PyTTI's: 0.02 for both palettes).

    Raises:
        ValueError: an unknown image model name.
    """
    try:
        return float(_MODELS[image_model].default_learning_rate)
    except KeyError:
        raise ValueError(f"unknown image_model {image_model!r}") from None


def make_image(
    config: ImageConfig,
    generator: torch.Generator,
    device: torch.device,
    init: torch.Tensor | None = None,
    vqgan: VQGANModel | None = None,
) -> ImageParam:
    """Build the configured image model: from ``init`` (1, 3, H, W) when given, else random.

    Args:
        config: which model and its settings.
        generator: the source of the random start (RGB: uniform noise; palette: brightness/choice;
            VQGAN: codebook entries).
        device: where the parameters live.
        init: a start picture at the output size, or ``None``.
        vqgan: the loaded VQGAN (``image_model: vqgan`` only).

    Returns:
        The image model.
    """
    if config.image_model == "unlimited_palette":
        if init is None:
            init = torch.rand(1, 3, config.height, config.width, generator=generator)
        return RGBImage(init.to(device), config)
    if config.image_model == "limited_palette":
        image = PaletteImage(config, generator, device)
        if init is not None:
            image.encode(init.to(device))
        return image
    if config.image_model == "vqgan":
        return _vqgan_image(config, vqgan, generator, None if init is None else init.to(device))
    raise ValueError(f"unknown image_model {config.image_model!r}")


def _vqgan_image(
    config: ImageConfig, vqgan: VQGANModel | None, generator: torch.Generator, init: torch.Tensor | None
) -> ImageParam:
    from pytti_engine.image_params.vqgan import VQGANImage

    if vqgan is None:
        raise ValueError("image_model: vqgan needs the loaded VQGAN model")
    return VQGANImage(config, vqgan, generator, init)


def image_from_state(
    kind: str,
    config: dict[str, Any] | None,
    state: dict[str, torch.Tensor],
    device: torch.device,
    vqgan: VQGANModel | None = None,
) -> ImageParam:
    """Rebuild an image model exactly from a checkpoint's ``image_kind``, ``image_config`` and state.

    Args:
        kind: the model's ``kind`` (``rgb`` or ``limited_palette``).
        config: :meth:`ImageConfig.to_dict` of the model; ``None`` for checkpoints written before image
            configs were stored (RGB only: the config is read off the pixel tensor).
        state: the model's :meth:`state_dict`.
        device: where to put the tensors.
        vqgan: the loaded VQGAN, for a ``vqgan`` checkpoint.

    Returns:
        The image model with every tensor restored.

    Raises:
        ValueError: unknown kind, or tensors that do not fit the config.
    """
    if config is None:
        if kind != RGBImage.kind:
            raise ValueError(f"a {kind!r} checkpoint without an image config")
        _, _, height, width = state["pixels"].shape
        config = {"width": int(width), "height": int(height)}
    cfg = ImageConfig(**config)
    image: ImageParam
    if kind == RGBImage.kind:
        image = RGBImage(torch.zeros(1, 3, cfg.height, cfg.width, device=device), cfg)
    elif kind == PaletteImage.kind:
        image = PaletteImage(cfg, torch.Generator().manual_seed(0), device)
    elif kind == "vqgan":
        image = _vqgan_image(cfg, vqgan, torch.Generator().manual_seed(0), None)
    else:
        raise ValueError(f"unknown image model kind {kind!r}")
    image.load_state_dict(state)
    return image
