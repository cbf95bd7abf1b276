"""A bias-corrected exponential moving average of tensors (Katherine Crowson's, as in PyTTI's VQGAN)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch


class TensorEMA:
    """``average = biased / (1 - decay**n)`` with ``biased = decay·biased + (1 - decay)·x`` per update.

    Args:
        tensors: the tensors to follow (only their shapes, dtypes and devices are used here).
        decay: in ``[0, 1)``; 0 follows the tensors exactly.
    """

    def __init__(self, tensors: Sequence[torch.Tensor], decay: float) -> None:
        if not 0 <= decay < 1:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        self.decay = decay
        self.biased = [torch.zeros_like(t, requires_grad=False) for t in tensors]
        self.accum = torch.ones((), dtype=torch.float64)  # decay**n, kept exact in float64

    @torch.no_grad()
    def reset_(self) -> None:
        """Forget every update."""
        for b in self.biased:
            b.zero_()
        self.accum.fill_(1.0)

    @torch.no_grad()
    def update_(self, tensors: Sequence[torch.Tensor]) -> None:
        """Fold the current values in."""
        for b, t in zip(self.biased, tensors, strict=True):
            b.mul_(self.decay).add_(t.detach(), alpha=1 - self.decay)
        self.accum.mul_(self.decay)

    @torch.no_grad()
    def average(self, current: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """The bias-corrected averages (``current`` itself before the first update)."""
        if float(self.accum) == 1.0:
            return [t.detach() for t in current]
        scale = 1.0 / (1.0 - float(self.accum))
        return [b * scale for b in self.biased]

    @torch.no_grad()
    def warp_(self, indices: Sequence[int], warp: Callable[[torch.Tensor], torch.Tensor]) -> None:
        """Warp the followed tensors at ``indices`` in place (they move with the image)."""
        for i in indices:
            self.biased[i].copy_(warp(self.biased[i]))

    @torch.no_grad()
    def blend_(self, index: int, values: torch.Tensor, mask: torch.Tensor) -> None:
        """Make the average of tensor ``index`` equal ``values`` where ``mask`` is 1 (and keep it elsewhere).

        For a partial re-encode: the re-encoded region starts its history afresh, the rest keeps its own.

        Args:
            index: which followed tensor.
            values: the new values, the tensor's shape.
            mask: broadcastable to it, in [0, 1] (a blend weight).
        """
        if float(self.accum) == 1.0:  # no update yet: the average is the current value already
            return
        fresh = values.detach().to(self.biased[index]) * (1.0 - float(self.accum))
        self.biased[index].mul_(1 - mask).add_(fresh * mask)

    def state_dict(self, prefix: str = "ema.") -> dict[str, torch.Tensor]:
        """CPU copies of the buffers."""
        out = {f"{prefix}{i}": b.detach().cpu().clone() for i, b in enumerate(self.biased)}
        out[f"{prefix}accum"] = self.accum.clone()
        return out

    @torch.no_grad()
    def load_state_dict(self, state: dict[str, torch.Tensor], prefix: str = "ema.") -> None:
        """Restore from :meth:`state_dict`."""
        for i, b in enumerate(self.biased):
            b.copy_(state[f"{prefix}{i}"].to(b.device, b.dtype))
        self.accum.copy_(state[f"{prefix}accum"].to(torch.float64))
