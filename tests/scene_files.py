"""Small scene files for tests (plain text; no heavy imports, so conftest can use it)."""

from __future__ import annotations

import textwrap
from pathlib import Path


def small_scene_text(
    model_dir: Path,
    body: str = "",
    *,
    prompts: str,
    size: int = 32,
    frames: int = 3,
    steps: int = 2,
    seed: int = 3,
    cutouts: int = 2,
) -> str:
    """A tiny scene guided by the local-dir model ``model_dir``; ``body`` is extra YAML (a ``scenes:``
    in it replaces the one scene of ``frames`` frames with ``prompts``)."""
    text = textwrap.dedent(
        f"""\
        width: {size}
        height: {size}
        fps: 12
        seed: {seed}
        steps_per_frame: {steps}
        perceptors:
          - {{model: "local-dir:{model_dir}"}}
        cutouts: {cutouts}
        """
    )
    text += textwrap.dedent(body)
    if "scenes:" not in body:
        text += f'scenes:\n  - prompts: "{prompts}"\n    frames: {frames}\n'
    return text
