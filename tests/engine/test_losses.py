"""Tests for pytti_engine.losses: spherical distance, prompt loss with stop gate, TV, replace_grad."""

from __future__ import annotations

import math

import pytest
import torch

from pytti_engine.errors import ShapeError
from pytti_engine.losses import prompt_loss, replace_grad, spherical_distance, tv_loss

# ---- spherical_distance ------------------------------------------------------------------------


def test_spherical_distance_known_values() -> None:
    e = torch.eye(3)
    d = spherical_distance(e, torch.cat([e, -e[:1]]))  # (3, 4)
    assert d.shape == (3, 4)
    torch.testing.assert_close(d.diagonal(), torch.zeros(3))  # identical -> 0
    assert d[0, 1].item() == pytest.approx(math.pi**2 / 8)  # orthogonal -> (pi/2)^2 / 2
    assert d[0, 3].item() == pytest.approx(math.pi**2 / 2, rel=1e-5)  # opposite -> pi^2 / 2


def test_spherical_distance_is_half_squared_angle_and_scale_invariant() -> None:
    x, y = torch.randn(5, 16), torch.randn(7, 16)
    cos = torch.nn.functional.cosine_similarity(x[:, None], y[None], dim=-1)
    angle = torch.arccos(cos.clamp(-1, 1))
    torch.testing.assert_close(spherical_distance(x, y), angle**2 / 2, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(spherical_distance(3 * x, 0.5 * y), spherical_distance(x, y))


def test_spherical_distance_gradient_is_finite_at_zero_and_antipode() -> None:
    x = torch.tensor([[1.0, 0.0], [-1.0, 0.0]], requires_grad=True)
    spherical_distance(x, torch.tensor([[1.0, 0.0]])).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_spherical_distance_shape_errors() -> None:
    with pytest.raises(ShapeError):
        spherical_distance(torch.zeros(3), torch.zeros(1, 3))
    with pytest.raises(ShapeError, match="widths differ"):
        spherical_distance(torch.zeros(2, 3), torch.zeros(1, 4))


# ---- prompt_loss -------------------------------------------------------------------------------


def _embeds_at(angles: list[float]) -> torch.Tensor:
    """Unit 2-D embeddings at the given angles (radians) from the x axis; requires grad."""
    a = torch.tensor(angles)
    return torch.stack([a.cos(), a.sin()], dim=1).requires_grad_(True)


TARGET = torch.tensor([1.0, 0.0])


def test_prompt_loss_value_is_weight_times_mean_distance() -> None:
    e = _embeds_at([0.3, 1.0])
    d = spherical_distance(e, TARGET[None])[:, 0]
    assert prompt_loss(e, TARGET, 2.0).item() == pytest.approx(2 * d.mean().item())
    assert prompt_loss(e, TARGET, -0.5).item() == pytest.approx(-0.5 * d.mean().item())
    assert prompt_loss(e, TARGET, 2.0, stop=0.9).item() == pytest.approx(
        2 * d.mean().item()
    )  # gate: grad only
    assert prompt_loss(e, TARGET[None], 2.0).item() == pytest.approx(2 * d.mean().item())  # (1, D) target


def _angle_grad(e: torch.Tensor) -> torch.Tensor:
    """d(loss)/d(angle) per embedding, for unit 2-D embeddings: positive means the loss grows with angle."""
    assert e.grad is not None
    tangent = torch.stack([-e[:, 1], e[:, 0]], dim=1).detach()
    return (e.grad * tangent).sum(dim=1)


def test_positive_weight_pulls_toward_the_target() -> None:
    e = _embeds_at([0.5, 1.2])
    prompt_loss(e, TARGET, 1.0).backward()
    assert (_angle_grad(e) > 0).all()  # descending reduces the angle to the target


def test_negative_weight_pushes_away() -> None:
    e = _embeds_at([0.5, 1.2])
    prompt_loss(e, TARGET, -1.0).backward()
    assert (_angle_grad(e) < 0).all()  # descending increases the angle


def test_stop_gates_positive_prompt_below_stop() -> None:
    # distances: angle 0.3 -> 0.045 (below the stop), angle 1.2 -> 0.72 (above it)
    e = _embeds_at([0.3, 1.2])
    prompt_loss(e, TARGET, 1.0, stop=0.1).backward()
    g = _angle_grad(e)
    assert g[0] == 0.0
    assert g[1] > 0


def test_stop_gates_negative_prompt_past_abs_stop() -> None:
    # weight -1, stop -0.5: push only while the distance is below 0.5 (angle 1.2 -> 0.72 is past it)
    e = _embeds_at([0.3, 1.2])
    prompt_loss(e, TARGET, -1.0, stop=-0.5).backward()
    g = _angle_grad(e)
    assert g[0] < 0
    assert g[1] == 0.0


def test_zero_weight_has_no_gradient() -> None:
    e = _embeds_at([0.3, 1.2])
    loss = prompt_loss(e, TARGET, 0.0)
    loss.backward()
    assert loss.item() == 0.0 and e.grad is not None and (e.grad == 0).all()


def test_per_cutout_weights() -> None:
    e = _embeds_at([0.5, 1.2])
    loss = prompt_loss(e, TARGET, torch.tensor([1.0, 0.0]))
    loss.backward()
    g = _angle_grad(e)
    assert g[0] > 0 and g[1] == 0
    with pytest.raises(ShapeError):
        prompt_loss(e, TARGET, torch.tensor([1.0, 0.0, 2.0]))


def test_prompt_loss_shape_errors() -> None:
    with pytest.raises(ShapeError):
        prompt_loss(torch.zeros(4, 8), torch.zeros(2, 8), 1.0)
    with pytest.raises(ShapeError):
        prompt_loss(torch.zeros(4, 8), torch.zeros(7), 1.0)


# ---- tv_loss -----------------------------------------------------------------------------------


def test_tv_loss_constant_is_zero_and_known_value() -> None:
    assert tv_loss(torch.full((2, 3, 8, 8), 0.3)).item() == 0.0
    ramp = torch.arange(4.0).view(1, 1, 1, 4).expand(1, 1, 4, 4)  # dx = 1 except the last column
    assert tv_loss(ramp).item() == pytest.approx(12 / 16)


def test_tv_loss_gradient_smooths() -> None:
    img = torch.rand(1, 3, 8, 8, requires_grad=True)
    tv_loss(img).backward()
    stepped = (img - 0.5 * img.grad).detach()  # type: ignore[operator]
    assert tv_loss(stepped) < tv_loss(img)
    with pytest.raises(ShapeError):
        tv_loss(torch.zeros(3, 8, 8))


# ---- replace_grad ------------------------------------------------------------------------------


def test_replace_grad_value_from_forward_gradient_from_backward() -> None:
    a = torch.tensor([1.0, 2.0], requires_grad=True)
    b = torch.tensor([3.0, 4.0], requires_grad=True)
    out = replace_grad(a * 10, b**2)
    assert torch.equal(out, torch.tensor([10.0, 20.0]))
    out.sum().backward()
    assert a.grad is None
    torch.testing.assert_close(b.grad, torch.tensor([6.0, 8.0]))


def test_replace_grad_broadcast_backward_sums_to_its_shape() -> None:
    b = torch.tensor(2.0, requires_grad=True)
    out = replace_grad(torch.zeros(3), b * 5)
    out.sum().backward()
    assert b.grad is not None and b.grad.item() == pytest.approx(15.0)


# ---- paired distances, HSV direct loss, gated_loss ----------------------------------------------


def test_paired_spherical_distance_matches_the_diagonal() -> None:
    from pytti_engine.losses import paired_spherical_distance

    x, y = torch.randn(4, 8), torch.randn(4, 8)
    torch.testing.assert_close(paired_spherical_distance(x, y), spherical_distance(x, y).diagonal())
    with pytest.raises(ShapeError):
        paired_spherical_distance(x, y[:3])


def test_hsv_mse_is_zero_at_the_target_and_has_gradient() -> None:
    from pytti_engine.losses import hsv_mse, hsv_target

    target = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    assert float(hsv_mse(target, hsv_target(target))) < 1e-10
    image = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(1)).requires_grad_(True)
    loss = hsv_mse(image, hsv_target(target))
    loss.backward()
    assert float(loss.detach()) > 0 and image.grad is not None and torch.isfinite(image.grad).all()
    grey = torch.full((1, 3, 4, 4), 0.5, requires_grad=True)  # hue undefined: still a finite gradient
    hsv_mse(grey, hsv_target(torch.rand(1, 3, 4, 4))).backward()
    assert grey.grad is not None and torch.isfinite(grey.grad).all()
    with pytest.raises(ShapeError):
        hsv_mse(image, hsv_target(target)[..., :4])


def test_gated_loss_on_a_single_value_gates_like_pytti() -> None:
    from pytti_engine.losses import gated_loss

    value = torch.tensor([0.3], requires_grad=True)
    assert float(gated_loss(value, 2.0).detach()) == pytest.approx(0.6)
    gated_loss(value, 2.0, stop=0.5).backward()  # below the stop: no pull
    assert value.grad is not None and float(value.grad) == 0.0
    with pytest.raises(ShapeError, match="per-item weights"):
        gated_loss(torch.ones(3), torch.ones(2))
