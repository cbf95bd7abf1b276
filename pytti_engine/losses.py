"""Loss functions: pure tensor functions with documented shapes (prompt distance, stop gate, TV).

The prompt loss follows PyTTI's ``Prompt.forward`` (spec/pytti-reference.md §2.3): the forward value is
``weight · distance`` and the *stop* is a gradient gate, implemented with :func:`replace_grad`.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from pytti_engine.checks import check_shape
from pytti_engine.errors import ShapeError


class _ReplaceGrad(torch.autograd.Function):
    """Forward returns the first input; backward sends the gradient to the second."""

    @staticmethod
    def forward(ctx: Any, forward: Tensor, backward: Tensor) -> Tensor:
        ctx.backward_shape = backward.shape
        return forward.clone()

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[None, Tensor]:
        return None, grad.sum_to_size(ctx.backward_shape)


def replace_grad(forward: Tensor, backward: Tensor) -> Tensor:
    """A tensor with the value of ``forward`` whose gradient flows as if it were ``backward``.

    No gradient reaches ``forward``. ``backward`` must broadcast to ``forward``'s shape; its gradient is
    summed back to its own shape.

    Args:
        forward: the value to return, any shape.
        backward: the expression to differentiate, broadcastable to ``forward``.

    Returns:
        A copy of ``forward`` (same shape, dtype and device).

    Example:
        >>> x = torch.tensor(3.0, requires_grad=True)
        >>> y = replace_grad(torch.tensor(10.0), 2 * x)
        >>> y.backward()
        >>> y.item(), x.grad.item()
        (10.0, 2.0)
    """
    out: Tensor = _ReplaceGrad.apply(forward, backward)
    return out


def spherical_distance(x: Tensor, y: Tensor) -> Tensor:
    """Pairwise squared great-circle distance between embeddings, as in PyTTI/Disco: ``2·arcsin(|x̂−ŷ|/2)²``.

    ``x̂, ŷ`` are the L2-normalized rows. Identical directions give 0, orthogonal ones ``π²/8`` and
    opposite ones ``π²/2`` (half the squared angle between them).

    Args:
        x: :math:`(N, D)`.
        y: :math:`(M, D)`.

    Returns:
        :math:`(N, M)` distances.

    Raises:
        ShapeError: if the inputs are not 2-D with the same ``D``.

    Example:
        >>> spherical_distance(torch.eye(2), torch.eye(2))
        tensor([[0.0000, 1.2337],
                [1.2337, 0.0000]])
    """
    check_shape(x, "N D")
    check_shape(y, "M D")
    if x.shape[1] != y.shape[1]:
        raise ShapeError(f"embedding widths differ: {x.shape[1]} and {y.shape[1]}")
    chord = (F.normalize(x, dim=-1)[:, None, :] - F.normalize(y, dim=-1)[None, :, :]).norm(dim=-1)  # (N, M)
    # clamp: rounding can push an antipodal chord just above 2, where arcsin is undefined.
    return 2 * torch.arcsin((chord / 2).clamp(max=1.0)) ** 2


def prompt_loss(embeds: Tensor, target: Tensor, weight: float | Tensor, stop: float | None = None) -> Tensor:
    """PyTTI's weighted prompt loss with its stop gate.

    With ``d`` the spherical distance of each cutout embedding to the target and ``s = sign(weight)``,
    the value is ``mean(|weight| · s · d)``: a positive weight pulls the cutouts toward the target and
    a negative one pushes them away. The stop is a gradient gate, not an early exit: a cutout only
    contributes a gradient while ``s · d >= stop``. So a positive prompt stops pulling once its
    distance falls below ``stop``, and a negative prompt (stop in ``[-1, 0]``, e.g. ``-0.9``) stops
    pushing once its distance exceeds ``|stop|``. The value is the same with or without the gate.

    Args:
        embeds: :math:`(N, D)` cutout embeddings.
        target: :math:`(D,)` or :math:`(1, D)` prompt embedding.
        weight: prompt weight; a float, or an :math:`(N,)` tensor of per-cutout weights (for masks).
        stop: the gate threshold; ``None`` for no gate.

    Returns:
        Scalar loss (mean over the cutouts).

    Raises:
        ShapeError: on mismatched shapes.

    Example:
        >>> e = torch.tensor([[1.0, 0.0]])
        >>> prompt_loss(e, torch.tensor([0.0, 1.0]), weight=2.0)
        tensor(2.4674)
    """
    check_shape(embeds, "N D")
    target_2d = target.reshape(1, -1) if target.dim() == 1 else target
    check_shape(target_2d, "1 D")
    distance = spherical_distance(embeds, target_2d)[:, 0]  # (N,)
    w = torch.as_tensor(weight, device=distance.device, dtype=distance.dtype)
    if w.dim() > 0:
        check_shape(w, "N")
        if w.shape[0] != distance.shape[0]:
            raise ShapeError(f"expected {distance.shape[0]} per-cutout weights, got {w.shape[0]}")
    signed = distance * torch.sign(w)  # (N,)
    threshold = -math.inf if stop is None else stop
    gated = torch.where(signed >= threshold, signed, signed.detach())  # no gradient below the stop
    return (w.abs() * replace_grad(signed, gated)).mean()


def tv_loss(image: Tensor) -> Tensor:
    """Total-variation smoothness loss, PyTTI's ``TVLoss``: ``mean(dx² + dy²)`` with replicate padding.

    ``dx``/``dy`` are differences to the right and lower neighbour; the last column/row is compared with
    itself (replicate padding), so the mean runs over all ``B·C·H·W`` positions.

    Args:
        image: :math:`(B, C, H, W)`.

    Returns:
        Scalar loss; 0 for a constant image.

    Example:
        >>> tv_loss(torch.ones(1, 3, 4, 4))
        tensor(0.)
    """
    check_shape(image, "B C H W")
    padded = F.pad(image, (0, 1, 0, 1), mode="replicate")
    dx = padded[..., :-1, 1:] - padded[..., :-1, :-1]  # (B, C, H, W)
    dy = padded[..., 1:, :-1] - padded[..., :-1, :-1]  # (B, C, H, W)
    return (dx.square() + dy.square()).mean()
