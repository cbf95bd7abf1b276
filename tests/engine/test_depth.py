"""Depth for 3D motion: the tiny Depth-Anything fixture through from_pretrained, flat depth, the cache."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from pytti_engine.depth import (
    DepthCache,
    DepthProvider,
    disparity_to_depth,
    flat_depth,
    image_hash,
    load_depth_model,
    write_tiny_depth_model,
)
from pytti_engine.errors import ModelLoadError
from pytti_engine.warps.warp3d import focal_length


@pytest.fixture(scope="module")
def tiny_depth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_depth_model(tmp_path_factory.mktemp("depth") / "tiny-da", seed=0)


def test_tiny_model_saves_in_the_transformers_layout(tiny_depth: Path) -> None:
    names = {p.name for p in tiny_depth.iterdir()}
    assert {"config.json", "model.safetensors", "preprocessor_config.json"} <= names
    config = json.loads((tiny_depth / "config.json").read_text())
    assert config["architectures"] == ["DepthAnythingForDepthEstimation"]


def test_loads_through_from_pretrained_and_predicts_per_pixel(tiny_depth: Path) -> None:
    model = load_depth_model(tiny_depth, torch.device("cpu"))
    assert model.size == 56  # from preprocessor_config.json
    image = torch.rand(2, 3, 20, 36)
    disparity = model(image)
    assert disparity.shape == (2, 1, 20, 36) and torch.isfinite(disparity).all()
    again = load_depth_model(tiny_depth, torch.device("cpu"))(image)
    torch.testing.assert_close(disparity, again)  # same weights from the same folder


def test_depth_model_is_differentiable_for_the_depth_loss(tiny_depth: Path) -> None:
    model = load_depth_model(tiny_depth, torch.device("cpu"))
    image = torch.rand(1, 3, 16, 16, requires_grad=True)
    model(image).sum().backward()
    assert image.grad is not None and image.grad.abs().sum() > 0
    assert not any(p.requires_grad for p in model.model.parameters())


def test_disparity_maps_to_near_far_in_inverse_depth() -> None:
    disparity = torch.tensor([[[[0.0, 0.5, 1.0]]]])
    depth = disparity_to_depth(disparity, 2.0, 10.0)
    torch.testing.assert_close(depth, 1 / torch.tensor([[[[0.1, 0.3, 0.5]]]]))
    # Affine-invariant: the model's scale and offset do not matter.
    torch.testing.assert_close(disparity_to_depth(disparity * 7 + 3, 2.0, 10.0), depth)
    flat = disparity_to_depth(torch.full((1, 1, 2, 2), 1e-9), 2.0, 10.0)
    torch.testing.assert_close(flat, torch.full((1, 1, 2, 2), 10.0))
    with pytest.raises(ValueError, match="near < far"):
        disparity_to_depth(disparity, 5.0, 5.0)


def test_flat_depth_sits_at_the_focal_distance() -> None:
    provider = DepthProvider(None, near=1.0, far=10.0, field_of_view=60.0)
    depth = provider.depth(torch.rand(1, 3, 24, 32))
    torch.testing.assert_close(depth, torch.full((1, 1, 24, 32), focal_length(60.0, 24)))
    assert flat_depth(torch.zeros(2, 3, 4, 5), 7.0).shape == (2, 1, 4, 5)


def test_depth_runs_once_per_image_and_is_cached_by_hash() -> None:
    calls: list[int] = []

    def estimator(image: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        return image.mean(dim=1, keepdim=True)

    provider = DepthProvider(estimator, near=1.0, far=10.0, field_of_view=60.0, cache=DepthCache(capacity=2))
    a, b = torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8)
    first = provider.depth(a)
    assert provider.depth(a.clone()) is first and len(calls) == 1
    provider.depth(b)
    assert len(calls) == 2 and provider.cache.hits == 1
    assert image_hash(a) == image_hash(a.clone()) != image_hash(b)
    assert image_hash(a) != image_hash(a.double())


def test_cache_evicts_the_least_recently_used() -> None:
    cache = DepthCache(capacity=2)
    for key in "abc":
        cache.put(key, torch.zeros(1))
    assert list(cache.entries) == ["b", "c"] and cache.get("a") is None


def test_missing_transformers_is_a_model_load_error(
    monkeypatch: pytest.MonkeyPatch, tiny_depth: Path
) -> None:
    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(ModelLoadError, match=r"install pytti-flow\[depth\]"):
        load_depth_model(tiny_depth, torch.device("cpu"))


def test_unknown_hub_id_fails_fast_offline() -> None:
    with pytest.raises(ModelLoadError, match="Hugging Face cache"):
        load_depth_model("nobody/no-such-depth-model", torch.device("cpu"))


def test_folder_with_wrong_contents_fails_to_load(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ModelLoadError, match="cannot load depth model folder"):
        load_depth_model(tmp_path, torch.device("cpu"))
