"""Device and randomness helpers: the one place that turns user strings into torch objects."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

import torch

from pytti_engine.errors import PyttiError

_DEVICE_RE = re.compile(r"^(auto|cpu|cuda(:\d+)?|mps)$")


def resolve_device(spec: str = "auto") -> torch.device:
    """Turn ``auto | cpu | cuda | cuda:N | mps`` into a :class:`torch.device`.

    ``auto`` picks ``cuda`` when a CUDA device is present, else the CPU. Asking for a CUDA or MPS
    device that does not exist is an error, not a silent fallback.

    Args:
        spec: the device string from the command line or the flow parameters.

    Returns:
        The device to render on.

    Raises:
        PyttiError: the string is malformed or names a device this machine does not have.
    """
    if not _DEVICE_RE.match(spec):
        raise PyttiError(f"--device must be auto, cpu, cuda or cuda:N, got {spec!r}")
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(spec)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise PyttiError(f"--device {spec}: CUDA is not available on this machine (use --device cpu)")
        index = device.index or 0
        if index >= torch.cuda.device_count():
            raise PyttiError(f"--device {spec}: only {torch.cuda.device_count()} CUDA device(s) present")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise PyttiError(f"--device {spec}: Apple's MPS is not available on this machine (use --device cpu)")
    return device


def frame_seed(seed: int, frame: int, salt: str = "") -> int:
    """A 63-bit seed derived from (scene seed, frame index, purpose), stable across runs and machines.

    Args:
        seed: the scene's seed.
        frame: the frame index (0 for the initial image).
        salt: a purpose tag, so that e.g. the init noise and the cutouts of one frame differ.

    Returns:
        A non-negative integer usable with ``torch.Generator.manual_seed``.
    """
    digest = hashlib.sha256(f"{seed}:{frame}:{salt}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def make_generator(
    seed: int, frame: int, salt: str = "", device: torch.device | None = None
) -> torch.Generator:
    """A :class:`torch.Generator` seeded by :func:`frame_seed` (on ``device``, default CPU)."""
    gen = torch.Generator(device=device or torch.device("cpu"))
    gen.manual_seed(frame_seed(seed, frame, salt))
    return gen


def device_constant(
    values: Sequence[float], device: torch.device, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """A small 1-D tensor of Python numbers made on ``device`` without a copy from host memory.

    ``torch.tensor(values, device=cuda)`` copies from pageable host memory, and such a copy waits for
    the CUDA stream (a host sync); here each element is filled by a kernel instead, so the optimizer
    step never stalls on a constant. The same on every device (the values are exact).

    Args:
        values: a handful of numbers (each costs one kernel launch off the CPU).
        device: where the tensor lives.
        dtype: its dtype.

    Returns:
        :math:`(len(values),)` tensor.
    """
    out = torch.empty(len(values), dtype=dtype, device=device)
    for i, value in enumerate(values):
        out[i] = value
    return out
