"""What the GPU tier shares: its marks and the stated run-to-run tolerance of CUDA renders."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest
import torch

GPU_TIER = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (the gpu tier)"),
]
"""``pytestmark`` of every module here: deselected by default (``-m 'not slow and not gpu'``), run with
``pytest -m gpu``, skipped without CUDA."""

MAX_LEVELS = 8
"""A CUDA render repeated on the same GPU and software may differ by at most this many 8-bit levels in
any pixel (the backward of ``grid_sample`` adds with atomics, so sums differ in the last bits and Adam
can amplify that where a gradient is near zero)..."""

MEAN_LEVELS = 1.0
"""... and by at most this many levels on average over a frame."""


def frame_difference(a: Sequence[np.ndarray], b: Sequence[np.ndarray]) -> tuple[int, float]:
    """(largest, mean) absolute difference in 8-bit levels between two renders' frames (uint8 arrays)."""
    assert len(a) == len(b) and len(a) > 0
    diffs = [np.abs(x.astype(np.int16) - y.astype(np.int16)) for x, y in zip(a, b, strict=True)]
    return int(max(d.max() for d in diffs)), float(max(d.mean() for d in diffs))


def assert_within_tolerance(a: Sequence[np.ndarray], b: Sequence[np.ndarray], what: str) -> None:
    """Fail unless ``a`` and ``b`` agree within :data:`MAX_LEVELS` / :data:`MEAN_LEVELS`; print the figures."""
    largest, mean = frame_difference(a, b)
    print(f"{what}: largest difference {largest} levels, mean {mean:.3f} levels")
    assert largest <= MAX_LEVELS and mean <= MEAN_LEVELS, (what, largest, mean)
