"""File I/O: images in and out, and (re-exported from :mod:`pytti_engine.atomic`) atomic writes."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from pytti_engine.atomic import atomic_write, atomic_write_bytes, atomic_write_text, sha256_file
from pytti_engine.checks import check_shape
from pytti_engine.errors import PyttiError

__all__ = [
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_text",
    "load_image",
    "png_bytes",
    "sha256_file",
    "tensor_to_uint8",
]


def tensor_to_uint8(image: torch.Tensor) -> np.ndarray:
    """(1, 3, H, W) float image in [0, 1] -> (H, W, 3) uint8 array (round to nearest)."""
    check_shape(image, "1 3 H W")
    arr = image.detach()[0].clamp(0, 1).mul(255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    return np.ascontiguousarray(arr)


def png_bytes(image: torch.Tensor) -> bytes:
    """Encode a (1, 3, H, W) image in [0, 1] as PNG bytes (deterministic: no timestamps)."""
    buf = io.BytesIO()
    Image.fromarray(tensor_to_uint8(image), mode="RGB").save(buf, format="PNG")
    return buf.getvalue()


def load_image(path: Path, size: tuple[int, int], *, device: torch.device | None = None) -> torch.Tensor:
    """Load an image file as a (1, 3, H, W) float tensor in [0, 1], resized to ``size`` = (W, H).

    Raises:
        PyttiError: the file is missing or is not an image.
    """
    try:
        with Image.open(path) as im:
            rgb = im.convert("RGB")
    except (OSError, ValueError) as e:
        raise PyttiError(f"{path}: cannot read image: {e}") from e
    if rgb.size != size:
        rgb = rgb.resize(size, Image.Resampling.LANCZOS)
    arr = torch.from_numpy(np.asarray(rgb, dtype=np.float32) / 255.0)
    return arr.permute(2, 0, 1).unsqueeze(0).to(device or torch.device("cpu"))
