"""Prompt masks (pure functions) and cutout matching for image prompts."""

from __future__ import annotations

import math

import pytest
import torch

from pytti_engine.errors import ShapeError
from pytti_engine.losses import gated_loss
from pytti_engine.masks import image_mask_weights, position_mask_stop, text_mask_stop
from pytti_engine.prompts import match_cutouts

INF = math.inf
CENTRES = torch.tensor([[0.2, 0.2], [0.8, 0.2], [0.2, 0.8], [0.8, 0.8]])  # (x, y), y down
SIZES = torch.tensor([[0.3, 0.3], [0.6, 0.6], [0.3, 0.6], [0.9, 0.9]])


@pytest.mark.parametrize(
    ("side", "kept"),
    [
        ("l", [0, 2]),
        ("r", [1, 3]),
        ("u", [0, 1]),
        ("d", [2, 3]),
        ("n", [1, 3]),  # smaller side >= 0.5: large cutouts
        ("f", [0, 2]),  # smaller side <= 0.5: small cutouts
    ],
)
def test_position_masks_keep_the_named_side(side: str, kept: list[int]) -> None:
    stop = position_mask_stop(side, CENTRES, SIZES)
    assert stop.shape == (4,)
    assert [i for i in range(4) if stop[i] == -INF] == kept
    assert all(stop[i] == INF for i in range(4) if i not in kept)


def test_position_mask_cutoff_moves_the_line() -> None:
    stop = position_mask_stop("l", CENTRES, SIZES, cutoff=0.9)
    assert (stop == -INF).all()


def test_position_mask_errors() -> None:
    with pytest.raises(ValueError, match="unknown positional mask"):
        position_mask_stop("x", CENTRES, SIZES)
    with pytest.raises(ShapeError):
        position_mask_stop("l", CENTRES[:, :1], SIZES)


def test_blocked_cutouts_get_no_gradient_but_keep_their_value() -> None:
    distance = torch.tensor([0.5, 0.5], requires_grad=True)
    stop = torch.tensor([-INF, INF])
    loss = gated_loss(distance, 2.0, None, stop)
    loss.backward()
    assert float(loss.detach()) == pytest.approx(1.0)
    assert distance.grad is not None
    torch.testing.assert_close(distance.grad, torch.tensor([1.0, 0.0]))
    # negative weights: the gate blocks the same cutout
    distance.grad = None
    gated_loss(distance, -2.0, None, stop).backward()
    torch.testing.assert_close(distance.grad, torch.tensor([-1.0, 0.0]))


def test_image_mask_weights_are_coverage_over_sqrt_mean() -> None:
    mask = torch.zeros(8, 8)
    mask[:, :4] = 1.0  # left half
    centres = torch.tensor([[0.25, 0.5], [0.75, 0.5], [0.5, 0.5], [2.0, 2.0]])
    sizes = torch.tensor([[0.5, 0.5], [0.5, 0.5], [0.5, 0.5], [0.2, 0.2]])
    w = image_mask_weights(mask, centres, sizes)
    scale = 1 / math.sqrt(0.5)
    torch.testing.assert_close(w, torch.tensor([1.0, 0.0, 0.5, 0.0]) * scale)
    inverted = image_mask_weights(1 - mask, centres, sizes)
    torch.testing.assert_close(inverted[:3], torch.tensor([0.0, 1.0, 0.5]) * scale)


def test_overhanging_cutout_counts_only_the_inside() -> None:
    mask = torch.ones(4, 4)
    w = image_mask_weights(mask, torch.tensor([[0.0, 0.0]]), torch.tensor([[1.0, 1.0]]))
    torch.testing.assert_close(w, torch.tensor([1.0]))


def test_empty_image_mask_disables_the_prompt() -> None:
    w = image_mask_weights(torch.zeros(4, 4), CENTRES, SIZES)
    assert (w == 0).all()


def test_text_mask_continuous_and_binary() -> None:
    embeds = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    mask = torch.tensor([1.0, 0.0])
    cont = text_mask_stop(embeds, mask)
    torch.testing.assert_close(cont, torch.tensor([0.0, math.pi**2 / 8]))
    binary = text_mask_stop(embeds, mask, cutoff=0.0)  # blocked beyond 0.7: the orthogonal cutout
    assert binary[0] == -INF and binary[1] == INF


def test_match_cutouts_pairs_by_position() -> None:
    stored = torch.tensor([[0.1, 0.1], [0.9, 0.9], [0.5, 0.5]])
    current = torch.tensor([[0.85, 0.9], [0.12, 0.1]])
    assert match_cutouts(stored, current).tolist() == [1, 0]
    with pytest.raises(ValueError, match="cannot pair"):
        match_cutouts(stored[:1], current)
