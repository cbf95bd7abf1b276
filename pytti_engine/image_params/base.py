"""The interface every image parameterization implements."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import torch


class ImageParam(Protocol):
    """An optimizer-bound image.

    ``decode()`` gives the (1, 3, H, W) image in [0, 1] that the losses see, differentiable w.r.t.
    ``parameters()``. ``apply_warp`` moves the content between frames (and is told to move any
    per-pixel optimizer state with it). ``state_dict``/``load_state_dict`` make a frame exact to resume.
    """

    kind: str

    def parameters(self) -> list[torch.Tensor]:
        """The leaf tensors the optimizer updates."""
        ...

    def decode(self) -> torch.Tensor:
        """(1, 3, H, W) image in [0, 1], differentiable."""
        ...

    def project_(self) -> None:
        """Bring the parameters back into their valid range after an optimizer step (in place)."""
        ...

    def apply_warp(self, warp: Callable[[torch.Tensor], torch.Tensor]) -> None:
        """Replace every spatial parameter ``p`` by ``warp(p)`` in place (keeping tensor identity)."""
        ...

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Tensors that fully describe the image."""
        ...

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore from :meth:`state_dict`."""
        ...
