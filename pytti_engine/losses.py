"""Loss functions: pure tensor functions with documented shapes (prompt distance, stop gate, TV).

The prompt loss follows PyTTI's ``Prompt.forward``: the forward value is
``weight · distance`` and the *stop* is a gradient gate, implemented with :func:`replace_grad`.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from kornia.color import rgb_to_hsv
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


def gated_loss(
    distance: Tensor, weight: float | Tensor, stop: float | None = None, mask_stop: Tensor | None = None
) -> Tensor:
    """PyTTI's weighted loss with its stop gate, on per-item distances (``Prompt.forward``).

    With ``s = sign(weight)`` the value is ``mean(|weight| · s · distance)``: a positive weight pulls
    toward the target and a negative one pushes away. The stop is a gradient gate, not an early exit:
    an item only contributes a gradient while ``s · distance >= threshold`` with
    ``threshold = max(stop, mask_stop + min(s, 0))``. So a positive prompt stops pulling once its
    distance falls below ``stop``, and a negative prompt (stop in ``[-1, 0]``, e.g. ``-0.9``) stops
    pushing once its distance exceeds ``|stop|``. The value is the same with or without the gate.

    Args:
        distance: :math:`(N,)` distances (cutouts, or a single loss value as :math:`(1,)`).
        weight: a float, or :math:`(N,)` per-item weights (image masks).
        stop: the prompt's gate threshold; ``None`` for no gate.
        mask_stop: :math:`(N,)` per-item gate thresholds from a mask (``+inf`` blocks an item,
            ``-inf`` leaves it alone), or ``None``.

    Returns:
        Scalar loss (mean over the items).

    Raises:
        ShapeError: on mismatched shapes.
    """
    check_shape(distance, "N")
    # A float weight stays a Python number (a kernel argument): a tensor made from it on a GPU would be
    # a copy from host memory, and that waits for the device.
    w: float | Tensor
    if isinstance(weight, Tensor):
        w = weight.to(device=distance.device, dtype=distance.dtype)
        if w.dim() > 0:
            check_shape(w, "N")
            if w.shape[0] != distance.shape[0]:
                raise ShapeError(f"expected {distance.shape[0]} per-item weights, got {w.shape[0]}")
        sign_t = torch.sign(w)
        sign: float | Tensor = sign_t
        magnitude: float | Tensor = w.abs()
        negative_part: float | Tensor = sign_t.clamp(max=0)
    else:
        w = float(weight)
        sign = float(w > 0) - float(w < 0)
        magnitude, negative_part = abs(w), min(sign, 0.0)
    signed = distance * sign  # (N,)
    if stop is None and mask_stop is None:
        return (magnitude * signed).mean()
    threshold = torch.full_like(signed, -math.inf if stop is None else stop)
    if mask_stop is not None:
        check_shape(mask_stop, "N")
        threshold = torch.maximum(threshold, mask_stop.to(signed) + negative_part)
    gated = torch.where(signed >= threshold, signed, signed.detach())  # no gradient below the stop
    return (magnitude * replace_grad(signed, gated)).mean()


def prompt_loss(
    embeds: Tensor,
    target: Tensor,
    weight: float | Tensor,
    stop: float | None = None,
    mask_stop: Tensor | None = None,
) -> Tensor:
    """PyTTI's weighted prompt loss: :func:`gated_loss` of the spherical distances to one target.

    Args:
        embeds: :math:`(N, D)` cutout embeddings.
        target: :math:`(D,)` or :math:`(1, D)` prompt embedding.
        weight: prompt weight; a float, or an :math:`(N,)` tensor of per-cutout weights (for masks).
        stop: the gate threshold; ``None`` for no gate.
        mask_stop: :math:`(N,)` per-cutout thresholds from a mask, or ``None``.

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
    return gated_loss(distance, weight, stop, mask_stop)


def paired_spherical_distance(x: Tensor, y: Tensor) -> Tensor:
    """Row-wise ``2·arcsin(|x̂−ŷ|/2)²`` of two :math:`(N, D)` embedding sets -> :math:`(N,)`."""
    check_shape(x, "N D")
    if x.shape != y.shape:
        raise ShapeError(f"paired embeddings differ in shape: {tuple(x.shape)} and {tuple(y.shape)}")
    chord = (F.normalize(x, dim=-1) - F.normalize(y, dim=-1)).norm(dim=-1)
    return 2 * torch.arcsin((chord / 2).clamp(max=1.0)) ** 2


def hsv_target(pixels: Tensor) -> Tensor:
    """:math:`(B, 5, H, W)` ``[R, G, B, S, V]`` of an RGB image :math:`(B, 3, H, W)` in [0, 1] (PyTTI's HSV space)."""
    hsv = rgb_to_hsv(pixels.clamp(0, 1))
    return torch.cat([pixels, hsv[:, 1:]], dim=1)


def hsv_mse(image: Tensor, target: Tensor) -> Tensor:
    """PyTTI's direct-image (``HSVLoss``) distance: MSE over ``[R, G, B, S, V]``.

    Args:
        image: :math:`(1, 3, H, W)` in [0, 1].
        target: :math:`(1, 5, H, W)` from :func:`hsv_target` (computed
            once per target picture).

    Returns:
        Scalar loss.
    """
    check_shape(image, "1 3 H W")
    check_shape(target, "1 5 H W")
    if image.shape[-2:] != target.shape[-2:]:
        raise ShapeError(f"target is {tuple(target.shape[-2:])}, image is {tuple(image.shape[-2:])}")
    return F.mse_loss(hsv_target(image), target)


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
