"""Shared fixtures: a tiny stand-in perceptor, small scenes, CPU defaults."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.scene_files import small_scene_text

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the Makefile sets it before Python starts; this is a backstop
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

REPO = Path(__file__).resolve().parent.parent

if TYPE_CHECKING:
    import torch

    from pytti_engine.perceptors import Perceptor
    from tests.http_server import Server


@pytest.fixture(scope="session")
def stand_in_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random-weight open_clip model in the local-dir layout (written once per session)."""
    from pytti_engine.perceptors import write_stand_in

    return write_stand_in(tmp_path_factory.mktemp("stand-in") / "clip", seed=0)


@pytest.fixture(scope="session")
def vqgan_models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models folder with tiny random-weight VQGANs in taming's layout: ``vqgan/imagenet.*`` (f16) and
    ``vqgan/openimages.*`` (gumbel f8). Skips the test when the ``[vqgan]`` extra is not installed."""
    pytest.importorskip("diffusers")
    from pytti_engine.image_params.vqgan import write_vqgan_stand_in

    folder = tmp_path_factory.mktemp("models")
    write_vqgan_stand_in(folder, name="imagenet", kind="vq", seed=0)
    write_vqgan_stand_in(folder, name="openimages", kind="gumbel", seed=1)
    return folder


@pytest.fixture(scope="session")
def toy_dir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The trained toy perceptor (pytti_engine.toy) in the local-dir layout.

    Trained once per machine: it is kept in pytest's cache folder (``.pytest_cache``) under a key that
    hashes the training code and settings, so later runs only read it (``--cache-clear`` retrains).
    """
    from pytti_engine.toy import cached_toy

    cache = getattr(request.config, "cache", None)
    root = cache.mkdir("pytti-toy-clip") if cache is not None else tmp_path_factory.mktemp("toy-clip")
    return cached_toy(root)


@pytest.fixture(scope="session")
def load_cached() -> Callable[[str, str | None, torch.device, bool | None], Perceptor]:
    """A perceptor loader for ``build_context(..., load=...)`` that loads each model once per session."""
    from pytti_engine.perceptors import load_perceptor

    @functools.cache
    def load(model: str, pretrained: str | None, device: torch.device, quick_gelu: bool | None) -> Perceptor:
        return load_perceptor(model, pretrained, device=device, quick_gelu=quick_gelu)

    return load


@pytest.fixture
def http_server(tmp_path: Path) -> Iterator[Server]:
    """A static file server on 127.0.0.1 (in a thread) serving ``tmp_path/www``; counts requests."""
    from tests.http_server import Server

    root = tmp_path / "www"
    root.mkdir()
    server = Server(root)
    yield server
    server.close()


@pytest.fixture
def torch_one_thread() -> Iterator[None]:
    """One intra-op thread for the test (tiny tensors gain nothing from threads; on a busy machine a
    second thread costs several times the work)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def write_scene(tmp_path: Path, stand_in_dir: Path) -> Callable[..., Path]:
    """Write a small scene file using the stand-in perceptor; ``body`` is extra YAML."""

    def _write(
        body: str = "",
        *,
        name: str = "scene.yaml",
        size: int = 32,
        frames: int = 3,
        steps: int = 2,
        seed: int = 3,
    ) -> Path:
        prompts = "a red circle:1 | noise:-0.5:-0.9"
        text = small_scene_text(
            stand_in_dir, body, prompts=prompts, size=size, frames=frames, steps=steps, seed=seed
        )
        path = tmp_path / name
        path.write_text(text)
        return path

    return _write
