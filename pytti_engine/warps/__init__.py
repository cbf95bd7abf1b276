"""Warps between frames: pure tensor functions built on kornia, one convention (see each ``Convention:``)."""

from __future__ import annotations

from pytti_engine.warps.affine import Motion2D, motion_matrix, warp_2d
from pytti_engine.warps.modes import sample_affine, sample_pixels

__all__ = ["Motion2D", "motion_matrix", "sample_affine", "sample_pixels", "warp_2d"]
