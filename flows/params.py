"""Flow parameters: one pydantic model per flow, so the Prefect UI shows a typed form and the server
rejects bad values (HTTP 409, ``enforce_parameter_schema``) before a worker or a GPU is touched.

No ``from __future__ import annotations`` here: these models are flow parameter annotations, and
served runs fail to validate postponed annotations (PrefectHQ/prefect#19447).
"""

import hashlib
from pathlib import Path
from typing import NamedTuple

from pydantic import BaseModel, Field, model_validator

from pytti_engine.io import atomic_write_text
from pytti_engine.scene import load_scene_text

INLINE_NAME = "<scene_text>"
"""How errors in inline scene text are located: ``<scene_text>:LINE:COL: message``."""


class RenderParams(BaseModel):
    """Parameters of one render (the Prefect UI shows them as a form)."""

    scene_path: str | None = Field(
        default=None, description="Path to the YAML scene file, as the worker sees it (or give scene_text)"
    )
    scene_text: str | None = Field(
        default=None,
        description="The scene YAML itself, instead of scene_path; relative paths in it resolve against the "
        "run directory",
    )
    out_dir: str | None = Field(
        default=None, description="Run directory (default: renders/<scene stem>, renders/inline-<hash>)"
    )
    device: str = Field(
        default="auto", pattern=r"^(auto|cpu|cuda(:\d+)?|mps)$", description="auto, cpu or cuda:N"
    )
    seed: int | None = Field(default=None, ge=0, le=2**63 - 1, description="Override the scene's seed")
    width: int | None = Field(default=None, ge=16, le=8192, description="Override the width (pixels)")
    height: int | None = Field(default=None, ge=16, le=8192, description="Override the height (pixels)")
    steps_per_frame: int | None = Field(
        default=None, ge=1, le=100_000, description="Override the optimizer steps per frame"
    )
    overrides: list[str] = Field(default_factory=list, description="Scene overrides, KEY=VALUE (as --set)")
    frame_timeout_s: float | None = Field(
        default=None,
        gt=0,
        description="Fail a frame that takes longer than this many seconds (default: no limit)",
    )

    @model_validator(mode="after")
    def _one_scene(self) -> "RenderParams":
        if (self.scene_path is None) == (self.scene_text is None):
            raise ValueError("give exactly one of scene_path and scene_text")
        return self

    def all_overrides(self) -> tuple[str, ...]:
        """``overrides`` followed by the typed overrides that are set (they win)."""
        typed = {
            "seed": self.seed,
            "width": self.width,
            "height": self.height,
            "steps_per_frame": self.steps_per_frame,
        }
        return (*self.overrides, *(f"{k}={v}" for k, v in typed.items() if v is not None))

    def label(self) -> str:
        """A short name for run names and tables: the scene path, or ``inline-<hash>``."""
        return self.scene_path if self.scene_path is not None else inline_stem(self.scene_text or "")


class SceneSource(NamedTuple):
    """Where a render's scene file is, once inline text has been written out."""

    scene_path: str
    out_dir: str | None
    overrides: tuple[str, ...]


def inline_stem(text: str) -> str:
    """``inline-<first 10 hex digits of sha256(text)>``."""
    return "inline-" + hashlib.sha256(text.encode()).hexdigest()[:10]


def resolve_scene(params: RenderParams) -> SceneSource:
    """The scene file a render reads; inline ``scene_text`` is validated, then written into the run dir.

    Raises:
        SceneError: the inline text is invalid, located at ``<scene_text>:LINE:COL`` (every error).
    """
    overrides = params.all_overrides()
    if params.scene_text is None:
        assert params.scene_path is not None  # guaranteed by RenderParams._one_scene
        return SceneSource(params.scene_path, params.out_dir, overrides)
    stem = inline_stem(params.scene_text)
    out_dir = Path(params.out_dir) if params.out_dir else Path("renders") / stem
    load_scene_text(params.scene_text, name=INLINE_NAME, base_dir=out_dir, overrides=overrides)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{stem}.yaml"
    atomic_write_text(path, params.scene_text)
    return SceneSource(str(path), str(out_dir), overrides)


def render_run_name() -> str:
    """The render flow's run name (a callable, so inline scenes get a name too)."""
    from prefect.runtime import flow_run

    return run_name_for(flow_run.parameters.get("params"))


def run_name_for(params: object) -> str:
    """``render-<scene>`` for a parameter value that may be a model or its JSON (as the API gives it)."""
    if isinstance(params, RenderParams):
        return f"render-{params.label()}"
    if isinstance(params, dict):
        if params.get("scene_path"):
            return f"render-{params['scene_path']}"
        if params.get("scene_text"):
            return f"render-{inline_stem(params['scene_text'])}"
    return "render-scene"
