"""Kornia-style input guards that raise :class:`~pytti_engine.errors.ShapeError` with a clear message."""

from __future__ import annotations

from torch import Tensor

from pytti_engine.errors import ShapeError


def check_shape(x: Tensor, spec: str) -> None:
    """Check that ``x`` has the shape described by ``spec``.

    ``spec`` is a space-separated list of dimensions. A number must match exactly; a name (``B``,
    ``H``...) matches any size, but a name used twice must match the same size both times
    (``"N 3 S S"`` requires square images).

    Args:
        x: the tensor to check.
        spec: e.g. ``"B 3 H W"``.

    Raises:
        ShapeError: ``expected (B, 3, H, W), got (1, 4, 64, 64)`` when the shape does not match.

    Example:
        >>> import torch
        >>> check_shape(torch.zeros(1, 3, 8, 8), "B 3 H W")
    """
    dims = spec.split()
    shape = tuple(x.shape)
    if not _matches(shape, dims):
        expected = ", ".join(dims)
        got = ", ".join(str(d) for d in shape)
        raise ShapeError(f"expected ({expected}), got ({got})")


def _matches(shape: tuple[int, ...], dims: list[str]) -> bool:
    """Whether ``shape`` satisfies the parsed spec ``dims``."""
    if len(shape) != len(dims):
        return False
    bound: dict[str, int] = {}
    for size, dim in zip(shape, dims, strict=True):
        if dim.isdigit():
            if size != int(dim):
                return False
        elif bound.setdefault(dim, size) != size:
            return False
    return True
