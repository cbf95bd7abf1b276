"""File I/O with atomic writes: a killed process never leaves a file that looks complete."""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

import numpy as np
import torch
from PIL import Image

from pytti_engine.checks import check_shape
from pytti_engine.errors import PyttiError


def atomic_write(path: Path, write: Callable[[IO[bytes]], object]) -> None:
    """Write ``path`` through a temporary file in the same folder, fsync, then rename over it.

    Args:
        path: the destination file.
        write: called with a binary file object to fill.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Atomically write ``data`` to ``path``."""
    atomic_write(path, lambda fh: fh.write(data))


def atomic_write_text(path: Path, text: str) -> None:
    """Atomically write UTF-8 ``text`` to ``path``."""
    atomic_write_bytes(path, text.encode("utf-8"))


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's contents."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


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
