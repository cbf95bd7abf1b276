"""Perceptor loading through open_clip's real factory, offline, on the tiny stand-in model."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import open_clip
import pytest
import torch
from huggingface_hub import constants as hf_constants
from open_clip.transformer import QuickGELU
from safetensors.torch import save_file

from pytti_engine import perceptors
from pytti_engine.errors import ModelLoadError, ShapeError
from pytti_engine.perceptors import Perceptor, available_models, load_perceptor, write_stand_in

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


@pytest.fixture(scope="module")
def stand_in_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_stand_in(tmp_path_factory.mktemp("stand_in"), seed=0)


@pytest.fixture(scope="module")
def stand_in(stand_in_dir: Path) -> Perceptor:
    return load_perceptor("local-dir:" + str(stand_in_dir))


@pytest.fixture
def empty_hf_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty Hugging Face cache, so a cache populated on the test machine changes nothing."""
    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(cache))
    return cache


def _images(n: int, size: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------------------------------------------
# The stand-in, loaded through `local-dir:`


def test_stand_in_round_trip(stand_in: Perceptor, stand_in_dir: Path) -> None:
    size = sum(f.stat().st_size for f in stand_in_dir.iterdir())
    assert sorted(f.name for f in stand_in_dir.iterdir()) == [
        "open_clip_config.json",
        "open_clip_model.safetensors",
    ]
    assert size < 3_000_000
    assert stand_in.name == f"local-dir:{stand_in_dir.resolve()}"
    assert stand_in.identity.startswith("local-dir:sha256=")
    assert stand_in.input_size == 224
    assert stand_in.mean == pytest.approx(OPENAI_MEAN)
    assert stand_in.std == pytest.approx(OPENAI_STD)
    assert not stand_in.model.training
    assert not any(p.requires_grad for p in stand_in.model.parameters())

    text = stand_in.encode_text(["a lighthouse on a cliff", "stormy sea", "watermark"])
    image = stand_in.encode_image(_images(2, 224))
    assert text.shape == (3, 32) and image.shape == (2, 32)
    assert not text.requires_grad
    torch.testing.assert_close(text.norm(dim=-1), torch.ones(3))
    torch.testing.assert_close(image.norm(dim=-1), torch.ones(2))


def test_stand_in_is_deterministic_for_a_seed(stand_in_dir: Path, tmp_path: Path) -> None:
    again = write_stand_in(tmp_path / "again", seed=0)
    other = write_stand_in(tmp_path / "other", seed=1)
    weights = "open_clip_model.safetensors"
    assert (again / weights).read_bytes() == (stand_in_dir / weights).read_bytes()
    assert (other / weights).read_bytes() != (stand_in_dir / weights).read_bytes()
    ids = [load_perceptor(f"local-dir:{d}").identity for d in (stand_in_dir, again, other)]
    assert ids[0] == ids[1] != ids[2]  # identity follows content, not path


def test_encode_image_is_differentiable(stand_in: Perceptor) -> None:
    image = _images(1, 224).requires_grad_(True)
    target = stand_in.encode_text(["a lighthouse"])
    loss = (1 - stand_in.encode_image(image) @ target.T).sum()
    loss.backward()
    assert image.grad is not None
    assert torch.isfinite(image.grad).all() and image.grad.abs().sum() > 0
    assert all(p.grad is None for p in stand_in.model.parameters())


def test_encode_image_applies_normalization(stand_in: Perceptor) -> None:
    image = _images(1, 224)
    mean = torch.tensor(OPENAI_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(OPENAI_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = torch.nn.functional.normalize(stand_in.model.encode_image((image - mean) / std), dim=-1)  # type: ignore[operator]
    torch.testing.assert_close(stand_in.encode_image(image), expected)


@pytest.mark.parametrize("shape", [(1, 3, 64, 64), (1, 4, 224, 224), (3, 224, 224)])
def test_encode_image_rejects_wrong_shapes(stand_in: Perceptor, shape: tuple[int, ...]) -> None:
    with pytest.raises(ShapeError, match=r"expected \(B, 3, 224, 224\)"):
        stand_in.encode_image(torch.rand(*shape))


# ---------------------------------------------------------------------------------------------------
# `pretrained=<file>` through open_clip's load_checkpoint


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_weights_file_gives_identical_embeddings(stand_in: Perceptor, tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"stand-in{suffix}"
    state = {k: v.contiguous() for k, v in stand_in.model.state_dict().items()}
    if suffix == ".safetensors":
        save_file(state, str(path))
    else:
        torch.save({"state_dict": state, "epoch": 1}, path)  # the wrapped form open_clip unwraps
    loaded = load_perceptor(perceptors.STAND_IN_MODEL, str(path))

    assert loaded.name == f"{perceptors.STAND_IN_MODEL}:{path.resolve()}"
    assert loaded.identity.startswith(f"{perceptors.STAND_IN_MODEL}:sha256=")
    assert (loaded.input_size, loaded.mean, loaded.std) == (stand_in.input_size, stand_in.mean, stand_in.std)
    texts = ["a lighthouse", "the sea"]
    assert torch.equal(loaded.encode_text(texts), stand_in.encode_text(texts))
    with torch.no_grad():
        assert torch.equal(loaded.encode_image(_images(2, 224)), stand_in.encode_image(_images(2, 224)))


def test_weights_of_another_architecture_are_a_model_load_error(stand_in_dir: Path, tmp_path: Path) -> None:
    config = json.loads((stand_in_dir / "open_clip_config.json").read_text())
    config["model_cfg"]["embed_dim"] = 16
    (tmp_path / "open_clip_config.json").write_text(json.dumps(config))
    (tmp_path / "open_clip_model.safetensors").write_bytes(
        (stand_in_dir / "open_clip_model.safetensors").read_bytes()
    )
    with pytest.raises(ModelLoadError, match="size mismatch"):
        load_perceptor(f"local-dir:{tmp_path}")


# ---------------------------------------------------------------------------------------------------
# Tags through open_clip's registry and the Hugging Face cache


def _fake_cached_tag(cache: Path, weights: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Register tag `testtag` for the stand-in architecture (QuickGELU-trained) and seed its HF cache."""
    cfg = {
        "hf_hub": "pytti/stand-in-test/",
        "quick_gelu": True,
        "mean": (0.5, 0.5, 0.5),
        "std": (0.25, 0.25, 0.25),
    }
    monkeypatch.setitem(open_clip.pretrained._PRETRAINED, perceptors.STAND_IN_MODEL, {"testtag": cfg})
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = cache / "models--pytti--stand-in-test"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    (repo / "snapshots" / commit).mkdir(parents=True)
    (repo / "snapshots" / commit / "open_clip_model.safetensors").write_bytes(weights.read_bytes())


@pytest.mark.parametrize("offline_flag", [True, False], ids=["HF_HUB_OFFLINE", "hub-unreachable"])
def test_cached_tag_loads_with_the_tags_activation_and_preprocessing(
    stand_in_dir: Path, empty_hf_cache: Path, monkeypatch: pytest.MonkeyPatch, offline_flag: bool
) -> None:
    weights = stand_in_dir / "open_clip_model.safetensors"
    _fake_cached_tag(empty_hf_cache, weights, monkeypatch)
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", offline_flag)
    monkeypatch.setattr(perceptors, "_hub_reachable", lambda: False)

    loaded = load_perceptor(perceptors.STAND_IN_MODEL, "testtag")

    assert loaded.name == loaded.identity == f"{perceptors.STAND_IN_MODEL}:testtag"
    activations = {type(m) for m in loaded.model.modules()}
    assert QuickGELU in activations and torch.nn.GELU not in activations
    assert (loaded.input_size, loaded.mean, loaded.std) == (224, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    reference = open_clip.create_model(
        perceptors.STAND_IN_MODEL, pretrained=str(weights), force_quick_gelu=True
    )
    tokens = open_clip.get_tokenizer(perceptors.STAND_IN_MODEL)(["a lighthouse"])
    with torch.no_grad():
        expected = torch.nn.functional.normalize(reference.encode_text(tokens), dim=-1)  # type: ignore[operator]
    assert torch.equal(loaded.encode_text(["a lighthouse"]), expected)


@pytest.mark.parametrize(("tag", "quick_gelu"), [("openai", True), ("laion2b_s34b_b79k", False)])
def test_quick_gelu_follows_the_registry_tag(
    monkeypatch: pytest.MonkeyPatch, tag: str, quick_gelu: bool
) -> None:
    assert bool(open_clip.get_pretrained_cfg("ViT-B-32", tag).get("quick_gelu", False)) is quick_gelu
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(perceptors, "_cached_tag_weights", lambda cfg: "/cache/weights.safetensors")
    plan = perceptors._plan("ViT-B-32", tag)
    assert plan.force_quick_gelu is quick_gelu
    assert (plan.open_clip_name, plan.pretrained) == ("ViT-B-32", tag)


def test_missing_tag_weights_fail_fast_with_instructions(
    empty_hf_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    start = time.perf_counter()
    with pytest.raises(ModelLoadError) as info:
        load_perceptor("ViT-B-32", "openai")
    assert time.perf_counter() - start < 5.0  # no download attempt, no retries (~0.1 s idle)
    message = str(info.value)
    for needle in (
        "ViT-B-32",
        "openai",
        "pytti models fetch ViT-B-32:openai",
        "pretrained: /path/to/file.safetensors",
        "local-dir:/path",
        "pytti models stand-in DIR",
    ):
        assert needle in message
    assert "\n" not in message


_TIMED_LOAD = """
import json, sys, time
from pytti_engine.errors import ModelLoadError
from pytti_engine.perceptors import load_perceptor
start = time.perf_counter()
try:
    load_perceptor("ViT-B-32", "openai")
    outcome = "loaded"
except ModelLoadError as e:
    outcome = str(e)
print(json.dumps({"seconds": time.perf_counter() - start, "outcome": outcome}))
"""


@pytest.mark.slow  # two fresh Pythons importing open_clip; the in-process offline case is above
def test_missing_tag_weights_fail_fast_with_and_without_hf_hub_offline(tmp_path: Path) -> None:
    # huggingface_hub reads HF_HUB_OFFLINE at import, so each case needs its own process; they run
    # concurrently. The endpoint is a refused local port so a networked machine never downloads.
    base = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    base.update(HF_HOME=str(tmp_path / "hf"), HF_HUB_CACHE=str(tmp_path / "hf" / "hub"))
    base["HF_ENDPOINT"] = "http://127.0.0.1:9"
    envs = {"offline": {**base, "HF_HUB_OFFLINE": "1"}, "unset": base}
    procs = {
        name: subprocess.Popen(
            [sys.executable, "-c", _TIMED_LOAD], env=env, stdout=subprocess.PIPE, text=True
        )
        for name, env in envs.items()
    }
    for name, proc in procs.items():
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0, name
        result = json.loads(out.strip().splitlines()[-1])
        assert result["seconds"] < 1.0, (name, result)
        assert "ViT-B-32 (pretrained: openai)" in result["outcome"], (name, result)
        reason = "HF_HUB_OFFLINE is set" if name == "offline" else "http://127.0.0.1:9 cannot be reached"
        assert reason in result["outcome"], (name, result)


def test_hub_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        monkeypatch.setattr(hf_constants, "ENDPOINT", f"http://127.0.0.1:{server.getsockname()[1]}")
        assert perceptors._hub_reachable() is True
    monkeypatch.setattr(hf_constants, "ENDPOINT", "http://127.0.0.1:9")
    assert perceptors._hub_reachable() is False


def test_hub_probe_is_bounded_when_the_network_hangs(monkeypatch: pytest.MonkeyPatch) -> None:
    release = threading.Event()

    def hang(*args: object, **kwargs: object) -> socket.socket:
        release.wait(10)
        raise OSError("hung")

    monkeypatch.setattr(perceptors.socket, "create_connection", hang)
    start = time.perf_counter()
    try:
        assert perceptors._hub_reachable(timeout=0.2) is False
        assert time.perf_counter() - start < 0.5
    finally:
        release.set()


def test_available_models_reports_cache_state(empty_hf_cache: Path) -> None:
    rows = available_models()
    assert ("ViT-B-32", "openai", False) in rows
    assert not any(cached for _, _, cached in rows)


# ---------------------------------------------------------------------------------------------------
# Bad requests


@pytest.mark.parametrize(
    ("model", "pretrained", "pattern"),
    [
        ("ViT-B-33", "openai", r"unknown open_clip model 'ViT-B-33'; did you mean: ViT-B-32"),
        ("vit-b-32", "openai", r"did you mean: ViT-B-32"),
        ("ViT-B-32", "opnai", r"'opnai' is neither a pretrained tag nor a file; did you mean: openai\?"),
        (
            "ViT-B-32",
            "/no/such/weights.safetensors",
            r"weights file not found: /no/such/weights\.safetensors",
        ),
        ("ViT-B-32", None, r"no weights given"),
        ("ViT-B-32:opnai", None, r"did you mean: openai"),
        ("local-dir:/no/such/dir", None, r"local-dir model folder not found: /no/such/dir"),
        ("local-dir:", None, r"needs a folder path"),
        ("hf-hub:org/repo", None, r"local-dir"),
    ],
)
def test_bad_requests_are_model_load_errors(model: str, pretrained: str | None, pattern: str) -> None:
    start = time.perf_counter()
    with pytest.raises(ModelLoadError, match=pattern):
        load_perceptor(model, pretrained)
    assert time.perf_counter() - start < 1.0


def test_bad_local_dirs_name_the_path(stand_in_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match=f"{tmp_path} has no open_clip_config.json"):
        load_perceptor(f"local-dir:{tmp_path}")
    (tmp_path / "open_clip_config.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match="unreadable"):
        load_perceptor(f"local-dir:{tmp_path}")
    (tmp_path / "open_clip_config.json").write_text((stand_in_dir / "open_clip_config.json").read_text())
    with pytest.raises(ModelLoadError, match=f"{tmp_path} has no weights file"):
        load_perceptor(f"local-dir:{tmp_path}")
    with pytest.raises(ModelLoadError, match="drop pretrained"):
        load_perceptor(f"local-dir:{stand_in_dir}", "openai")
