"""Prompt masks: per-cutout weights and gates from where each cutout lies (pure tensor functions).

Masks act per cutout, not per pixel (PyTTI's design). A mask gives each
cutout either a **gate** (``mask_stop``: ``+inf`` blocks the cutout's gradient, ``-inf`` leaves it; a
finite value is a per-cutout stop, see :func:`pytti_engine.losses.gated_loss`) or a **weight**.

Convention (what :class:`pytti_engine.cutouts.Cutouts` records):
    - ``offsets``: :math:`(N, 2)` crop centres ``(x, y)`` normalized by ``(W, H)``; 0 is the left/top
      image edge, 1 the right/bottom edge; ``y`` grows downward;
    - ``sizes``: :math:`(N, 2)` crop sizes normalized by ``(W, H)``.

Positional masks (``l r u d n f``), with ``cutoff`` defaulting to 0.5: ``l`` keeps cutouts whose centre
x is left of the cutoff, ``r`` right of it, ``u`` above it, ``d`` below it; ``n`` (near) keeps cutouts
whose smaller side is at least the cutoff, ``f`` (far) at most it. (PyTTI passes position and size to
its mask functions swapped; here the documented meaning holds.)
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from pytti_engine.checks import check_shape
from pytti_engine.losses import spherical_distance

POSITION_SIDES = ("l", "r", "u", "d", "n", "f")
DEFAULT_CUTOFF = 0.5
MIN_MASK_MEAN = 0.001
"""An image mask whose mean is below this disables its prompt (PyTTI's rule)."""
TEXT_MASK_BASE = 0.7
TEXT_MASK_SCALE = 0.3


def position_mask_stop(side: str, offsets: Tensor, sizes: Tensor, cutoff: float | None = None) -> Tensor:
    """Gate of a positional mask: ``-inf`` for cutouts on ``side``, ``+inf`` for the others.

    Args:
        side: one of ``l r u d n f``.
        offsets: :math:`(N, 2)` normalized crop centres.
        sizes: :math:`(N, 2)` normalized crop sizes.
        cutoff: the threshold (default 0.5).

    Returns:
        :math:`(N,)` per-cutout stops.

    Example:
        >>> position_mask_stop("l", torch.tensor([[0.2, 0.5], [0.8, 0.5]]), torch.full((2, 2), 0.3))
        tensor([-inf, inf])
    """
    check_shape(offsets, "N 2")
    check_shape(sizes, "N 2")
    t = DEFAULT_CUTOFF if cutoff is None else cutoff
    x, y, smaller = offsets[:, 0], offsets[:, 1], sizes.min(dim=1).values
    keep = {
        "l": lambda: x < t,
        "r": lambda: x > t,
        "u": lambda: y < t,
        "d": lambda: y > t,
        "n": lambda: smaller >= t,
        "f": lambda: smaller <= t,
    }
    if side not in keep:
        raise ValueError(f"unknown positional mask {side!r}; expected one of {' '.join(POSITION_SIDES)}")
    return _gate(keep[side]())


def image_mask_weights(mask: Tensor, offsets: Tensor, sizes: Tensor) -> Tensor:
    """Per-cutout weights of an image mask: mean mask value under each crop ÷ ``sqrt(mean(mask))``.

    The crop square is clipped to the image; a crop entirely outside gets 0. A mask whose mean is below
    ``MIN_MASK_MEAN`` gives all zeros (the prompt is off). Computed for all cutouts at once from a
    summed-area table (PyTTI loops over cutouts and adds an error-diffusion term, left out here).

    Args:
        mask: :math:`(H, W)` in ``[0, 1]`` at the image size (invert it beforehand for ``_[-mask]``).
        offsets: :math:`(N, 2)` normalized crop centres.
        sizes: :math:`(N, 2)` normalized crop sizes.

    Returns:
        :math:`(N,)` non-negative weights.

    Example:
        >>> m = torch.zeros(4, 4); m[:, :2] = 1
        >>> image_mask_weights(m, torch.tensor([[0.25, 0.5], [0.75, 0.5]]), torch.full((2, 2), 0.5))
        tensor([1.4142, 0.0000])
    """
    check_shape(mask, "H W")
    check_shape(offsets, "N 2")
    check_shape(sizes, "N 2")
    height, width = mask.shape
    mean = mask.mean()
    if float(mean) < MIN_MASK_MEAN:
        return offsets.new_zeros(offsets.shape[0])
    table = torch.zeros(height + 1, width + 1, device=mask.device, dtype=torch.float64)
    table[1:, 1:] = mask.double().cumsum(0).cumsum(1)
    extent = torch.tensor([width, height], device=offsets.device, dtype=offsets.dtype)
    low = ((offsets - sizes / 2) * extent).round().long()  # (N, 2) pixel edges
    high = ((offsets + sizes / 2) * extent).round().long()
    limit = torch.tensor([width, height], device=offsets.device)
    low = torch.minimum(low.clamp(min=0), limit).to(mask.device)
    high = torch.minimum(high.clamp(min=0), limit).to(mask.device)
    x0, y0, x1, y1 = low[:, 0], low[:, 1], high[:, 0], high[:, 1]
    total = table[y1, x1] - table[y0, x1] - table[y1, x0] + table[y0, x0]
    area = ((x1 - x0) * (y1 - y0)).double()
    coverage = torch.where(area > 0, total / area.clamp(min=1), torch.zeros_like(total))
    return (coverage / math.sqrt(float(mean))).to(device=offsets.device, dtype=offsets.dtype)


def text_mask_stop(embeds: Tensor, mask_embed: Tensor, cutoff: float | None = None) -> Tensor:
    """Gate of a text (semantic) mask from each cutout's CLIP distance to the mask text.

    Without a cutoff the gate is continuous, as in PyTTI: each cutout's stop is its distance to the mask
    text, so the prompt acts on a cutout only while the cutout is at least as far from the prompt as from
    the mask. With a cutoff it is binary: cutouts farther than ``0.7 + 0.3·cutoff`` from the mask text
    are blocked.

    Args:
        embeds: :math:`(N, D)` cutout embeddings (detached by this function).
        mask_embed: :math:`(D,)` embedding of the mask text.
        cutoff: binary threshold parameter, or ``None`` for the continuous gate.

    Returns:
        :math:`(N,)` per-cutout stops.
    """
    check_shape(embeds, "N D")
    distance = spherical_distance(embeds.detach().float(), mask_embed.reshape(1, -1).float())[:, 0]
    if cutoff is None:
        return distance
    return _gate(distance <= TEXT_MASK_BASE + TEXT_MASK_SCALE * cutoff)


def _gate(keep: Tensor) -> Tensor:
    """``-inf`` where ``keep`` else ``+inf`` (float32)."""
    inf = torch.full(keep.shape, math.inf, device=keep.device)
    return torch.where(keep, -inf, inf)
