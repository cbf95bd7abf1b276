"""Helpers for scene tests: write a scene file and load it."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from pytti_engine.scene import Scene, load_scene

MINIMAL = """\
scenes:
  - prompts: "a lighthouse:2 | fog:-1:-.9"
    frames: 4
"""


@pytest.fixture
def write_scene(tmp_path: Path) -> Callable[[str], Path]:
    """Write dedented YAML to ``tmp_path/scene.yaml`` and return its path."""

    def write(text: str, name: str = "scene.yaml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return path

    return write


@pytest.fixture
def load(write_scene: Callable[[str], Path]) -> Callable[..., Scene]:
    """Write YAML and load it as a scene."""

    def go(text: str, overrides: tuple[str, ...] = ()) -> Scene:
        return load_scene(write_scene(text), overrides)

    return go
