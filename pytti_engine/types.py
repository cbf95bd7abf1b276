"""Shared type aliases for the engine: mode names that cross module boundaries.

The names here are the user-facing names (YAML values), mapped to library arguments in exactly one
place, :mod:`pytti_engine.warps.modes`.
"""

from __future__ import annotations

from typing import Literal, TypeAlias

PaddingMode: TypeAlias = Literal["mirror", "wrap", "black", "smear"]
"""How a warp fills pixels that come from outside the image (PyTTI's ``infill_mode``).

``mirror``: reflection about the edge pixel centres; ``wrap``: the opposite edge (periodic image);
``black``: zeros; ``smear``: the nearest edge pixel repeated.
"""

SamplingMode: TypeAlias = Literal["nearest", "bilinear", "bicubic"]
"""Interpolation used when resampling an image (PyTTI's ``sampling_mode``)."""

BorderMode: TypeAlias = Literal["clamp", "mirror", "wrap", "black", "smear"]
"""How cutouts treat the image border (PyTTI's ``border_mode``).

``clamp`` keeps every crop inside the image; the other names allow crops to reach ``cutout_border``
beyond the edge and fill the outside like the :data:`PaddingMode` of the same name.
"""
