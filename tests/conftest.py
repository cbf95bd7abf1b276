"""Shared fixtures: a tiny stand-in perceptor, small scenes, CPU defaults."""

import os
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the Makefile sets it before Python starts; this is a backstop
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

REPO = Path(__file__).resolve().parent.parent


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
        text = textwrap.dedent(
            f"""\
            width: {size}
            height: {size}
            fps: 12
            seed: {seed}
            steps_per_frame: {steps}
            perceptors:
              - {{model: "local-dir:{stand_in_dir}"}}
            cutouts: 2
            """
        )
        text += textwrap.dedent(body)
        if "scenes:" not in body:
            text += f'scenes:\n  - prompts: "a red circle:1 | noise:-0.5:-0.9"\n    frames: {frames}\n'
        path = tmp_path / name
        path.write_text(text)
        return path

    return _write
