"""Flow parameters: one pydantic model per flow, so the Prefect UI shows a typed form and the server
rejects bad values (HTTP 409, ``enforce_parameter_schema``) before a worker or a GPU is touched.

No ``from __future__ import annotations`` here: these models are flow parameter annotations, and
served runs fail to validate postponed annotations (PrefectHQ/prefect#19447).
"""

import hashlib
import re
from pathlib import Path
from typing import Any, NamedTuple

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from pytti_engine.confine import (
    check_input,
    check_output,
    input_roots,
    real_path,
    renders_root,
    under_renders_root,
)
from pytti_engine.fetch import check_reachable
from pytti_engine.identity import RunIdentity, default_run_dir
from pytti_engine.io import atomic_write_text
from pytti_engine.preflight import PreflightReport, preflight
from pytti_engine.scene import build_plan, load_scene, load_scene_text

INLINE_NAME = "<scene_text>"
"""How errors in inline scene text are located: ``<scene_text>:LINE:COL: message``."""


DEVICE_CHOICES = ("auto", "cpu", "cuda", *(f"cuda:{i}" for i in range(16)), "mps")
"""What the form offers for ``device`` (Python callers may name any ``cuda:N``)."""

STARTER_SCENE = """\
title: My scene
width: 256
height: 256
fps: 12
steps_per_frame: 50
perceptors:
  - {model: ViT-B-32, pretrained: openai}
animation: 2d
zoom: 1.02
scenes:
  - prompts: "a lighthouse on a cliff in a storm, oil painting:2 | text:-0.5:-0.9"
    seconds: 4
"""
"""What the form's "Scene text" box starts with (edit it, or paste a scene over it)."""


SOURCE_TITLES = {"scene_path": "Scene file", "scene_text": "Scene text"}
"""The two ways to give a scene, and their tab titles in the form."""

CONSTRAINTS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "pattern", "minLength")


def form_schema(schema: dict[str, Any]) -> None:
    """Turn pydantic's JSON schema of :class:`RenderParams` into one the Prefect UI shows as a form.

    - The scene source is a choice of two (``oneOf``): "Scene file" (``scene_path``) or "Scene text"
      (``scene_text``, pasted YAML). The UI shows them as two tabs, so a run from the form names
      exactly one, and the server refuses an API request with neither or both (HTTP 409).
    - Optional values (``int | None``) lose their ``null`` branch: the form shows one typed input
      (left empty: the scene's value), and a bad value is refused with the field's own limit
      ("5 is less than the minimum of 16"), not "not valid under any of the given schemas".
    - ``device`` is a choice list.

    The limits are checked once, in the top-level ``properties``; the two alternatives repeat the
    fields without limits (what the form draws), so that a bad width is reported as itself.
    """
    props: dict[str, Any] = schema["properties"]
    for prop in props.values():
        _drop_null_branch(prop)
    device_choice_list(schema)
    for field in SOURCE_TITLES:
        props[field]["minLength"] = 1
    shown = {k: {key: v for key, v in prop.items() if key not in CONSTRAINTS} for k, prop in props.items()}
    shown["scene_text"]["default"] = STARTER_SCENE  # see _alternative
    schema["oneOf"] = [_alternative(shown, field, title) for field, title in SOURCE_TITLES.items()]
    schema["type"] = "object"


def device_choice_list(schema: dict[str, Any]) -> None:
    """Show the ``device`` field of a flow's parameter model as a choice list in the form."""
    device = schema["properties"]["device"]
    device["enum"] = list(DEVICE_CHOICES)
    device.pop("pattern", None)


def _alternative(shown: dict[str, Any], field: str, title: str) -> dict[str, Any]:
    """The form of one scene source: that field (required) and every other setting.

    The other source, given as a string, makes this alternative fail (so both is refused). The
    "Scene text" box has a default (an example scene) because the UI picks the tab whose fields
    best match the form's value: without it, a click on "Scene text" would jump back.
    """
    (other,) = set(SOURCE_TITLES) - {field}
    return {
        "title": title,
        "type": "object",
        "properties": {field: shown[field], **{k: v for k, v in shown.items() if k not in SOURCE_TITLES}},
        "required": [field],
        "not": {"required": [other], "properties": {other: {"type": "string"}}},
    }


def _drop_null_branch(prop: dict[str, Any]) -> None:
    """``{"anyOf": [X, {"type": "null"}], "default": None, ...}`` → ``{**X, ...}`` without the default."""
    branches = prop.get("anyOf")
    if not branches or {"type": "null"} not in branches or len(branches) != 2:
        return
    (typed,) = [b for b in branches if b != {"type": "null"}]
    del prop["anyOf"]
    prop.update(typed)
    if prop.get("default", "") is None:
        del prop["default"]


class RenderParams(BaseModel):
    """Parameters of one render: a scene file or pasted scene text, where to render, and overrides."""

    model_config = ConfigDict(json_schema_extra=form_schema)

    scene_path: str | None = Field(
        default=None,
        title="Scene file",
        description="Path of the YAML scene file, as the worker sees it (for example scenes/demo.yaml)",
    )
    scene_text: str | None = Field(
        default=None,
        title="Scene text",
        description="The scene YAML itself, pasted; relative paths in it resolve against the run directory",
    )
    out_dir: str | None = Field(
        default=None,
        title="Run directory",
        description="Where frames, checkpoints and the video go, as the worker sees it; a relative path is "
        "inside the worker's renders root (PYTTI_RENDERS_ROOT). Empty: a folder there named after the "
        "scene (and its overrides), never one that holds another render",
    )
    replace: bool = Field(
        default=False,
        title="Replace another render",
        description="Let this render take over a run directory that holds another render (another scene "
        "file, other overrides or other scene text); without it such a directory is refused",
    )
    device: str = Field(
        default="auto",
        pattern=r"^(auto|cpu|cuda(:\d+)?|mps)$",
        description="auto (a GPU when there is one), cpu, cuda or cuda:N",
    )
    seed: int | None = Field(
        default=None, ge=0, le=2**63 - 1, description="Override the scene's seed (empty: the scene's)"
    )
    width: int | None = Field(
        default=None,
        ge=16,
        le=8192,
        description="Override the width in pixels, 16 to 8192 (empty: the scene's)",
    )
    height: int | None = Field(
        default=None,
        ge=16,
        le=8192,
        description="Override the height in pixels, 16 to 8192 (empty: the scene's)",
    )
    steps_per_frame: int | None = Field(
        default=None,
        ge=1,
        le=100_000,
        title="Steps per frame",
        description="Override the optimizer steps per frame, 1 to 100000 (empty: the scene's)",
    )
    overrides: list[str] = Field(
        default_factory=list,
        description="More overrides of scene keys, one KEY=VALUE each (as pytti render --set), "
        "for example fps=24",
    )
    frame_timeout_s: float | None = Field(
        default=None,
        gt=0,
        title="Frame timeout (seconds)",
        description="Fail a frame that takes longer than this many seconds (empty: no limit)",
    )

    @model_validator(mode="after")
    def _one_scene(self) -> "RenderParams":
        if (self.scene_path is None) == (self.scene_text is None):
            raise ValueError(
                "give exactly one of scene_path (a scene file) and scene_text (pasted scene YAML)"
            )
        return self

    def all_overrides(self) -> tuple[str, ...]:
        """``overrides`` followed by the typed overrides that are set (they win)."""
        return (*self.overrides, *self.typed_overrides())

    def typed_overrides(self) -> tuple[str, ...]:
        """The typed overrides that are set, as ``KEY=VALUE``."""
        typed = {
            "seed": self.seed,
            "width": self.width,
            "height": self.height,
            "steps_per_frame": self.steps_per_frame,
        }
        return tuple(f"{k}={v}" for k, v in typed.items() if v is not None)

    def label(self) -> str:
        """A short name for run names and tables: the scene path, or ``inline-<hash>``."""
        return self.scene_path if self.scene_path is not None else inline_stem(self.scene_text or "")


class SceneSource(NamedTuple):
    """What a render reads and where it writes, worked out before anything is written.

    ``scene_path`` is the scene file; for pasted ``text`` it is where the text will be written (inside
    the run directory, once the run lock is held: :func:`write_inline_scene`). ``report`` is what the
    preflight found the render will use (perceptors, activations, warnings to show).
    """

    scene_path: str
    out_dir: str
    overrides: tuple[str, ...]
    identity: RunIdentity
    text: str | None = None
    report: PreflightReport | None = None


def inline_stem(text: str) -> str:
    """``inline-<first 10 hex digits of sha256(text)>``."""
    return "inline-" + hashlib.sha256(text.encode()).hexdigest()[:10]


def resolve_scene(params: RenderParams) -> SceneSource:
    """The scene file a render reads, its run directory and identity, after every check a render can
    make before it starts; writes nothing.

    The scene (a file, or inline ``scene_text`` whose relative paths resolve against the run
    directory) is validated and then preflighted on ``params.device``
    (:func:`pytti_engine.preflight.preflight`: models, inputs, values, the device), so the CLI, the
    UI's runs and batches refuse the same scenes, before any model loads.
    A relative ``out_dir`` lies inside the renders root; without one the render gets its default
    folder there (:func:`pytti_engine.identity.default_run_dir`, which never picks another render's).

    Raises:
        ConfinementError: the scene file or the run directory lies outside the allowed roots.
        SceneError: the scene is invalid, located at ``FILE:LINE:COL`` (``<scene_text>`` for inline
            text; every error).
        PreflightError: the scene cannot render here (one line per problem).
    """
    overrides = params.all_overrides()
    text = params.scene_text
    if text is None:
        assert params.scene_path is not None  # guaranteed by RenderParams._one_scene
        scene = Path(params.scene_path)
        stem, identity = scene.stem, RunIdentity.of(scene, overrides, renders_root())
    else:
        stem = inline_stem(text)
        identity = RunIdentity.inline(f"{stem}.yaml", overrides)
    if params.out_dir:
        out_dir = under_renders_root(params.out_dir)
    else:
        out_dir = default_run_dir(renders_root(), stem, identity, label=overrides)
    check_output(out_dir, "out_dir")
    if text is not None:
        loaded = load_scene_text(text, name=INLINE_NAME, base_dir=out_dir, overrides=overrides)
        report = preflight(loaded, build_plan(loaded), name=INLINE_NAME, device=params.device)
        check_reachable(loaded, out_dir)
        return SceneSource(str(out_dir / f"{stem}.yaml"), str(out_dir), overrides, identity, text, report)
    if not _own_inline_scene(scene, out_dir):
        check_input(scene, "scene file", input_roots())
    loaded = load_scene(scene, overrides)
    report = preflight(loaded, build_plan(loaded), name=str(scene), device=params.device)
    check_reachable(loaded, out_dir)  # URL inputs not fetched yet answer (nothing is downloaded here)
    identity = RunIdentity.of(scene, overrides, out_dir)
    return SceneSource(str(scene), str(out_dir), overrides, identity, report=report)


def _own_inline_scene(scene: Path, out_dir: Path) -> bool:
    """The ``inline-<hash>.yaml`` a render of pasted text wrote into its run directory (``pytti resume``)."""
    real = real_path(scene)
    return (
        real.parent == real_path(out_dir)
        and re.fullmatch(r"inline-[0-9a-f]{10}\.yaml", real.name) is not None
    )


def write_inline_scene(source: SceneSource) -> None:
    """Write pasted scene text into the run directory (call while holding the run lock)."""
    if source.text is not None:
        atomic_write_text(Path(source.scene_path), source.text)


GENERATED_RUN_NAME = re.compile(
    r"^(?:[a-z]+-[a-z]+"  # the server's adjective-animal slugs (also runs created without a name)
    r"|(?:Awesome|Rustic|Small|Gorgeous|Fantastic|Sleek|Intelligent|Unbranded|Refined|Licensed|Generic"
    r"|Practical|Ergonomic|Handcrafted|Tasty|Handmade|Incredible)-[A-Z][a-z]{0,5})$"  # the UI's pick
)
"""Run names nobody chose: Prefect's generated ones, which the render replaces with a descriptive one."""


def render_run_name() -> str:
    """The render flow's run name: the one the user typed in the form, else a descriptive one.

    Prefect's random names (``adjective-animal``, and the form's pre-filled ``Adjective-Animal``)
    become ``<title> · <scene> [overrides] → <run dir>``; anything else was typed and is kept.
    """
    from prefect.runtime import flow_run

    current = flow_run.name
    if current and not GENERATED_RUN_NAME.match(current):
        return str(current)
    return run_name_for(flow_run.parameters.get("params"))


def run_name_for(params: object) -> str:
    """``<title> · <scene> [overrides] → <run dir>`` for a model or its JSON (as the API gives it).

    The scene is the last two parts of its path (``alice/test.yaml``) or "pasted text"; the title is
    the scene's ``title`` when it has one.
    """
    if isinstance(params, dict):
        try:
            params = RenderParams.model_validate(params)
        except ValueError:
            return "render"
    if not isinstance(params, RenderParams):
        return "render"
    if params.scene_path is not None:
        where = "/".join(Path(params.scene_path).parts[-2:])
        title = _title(_read_head(Path(params.scene_path)))
    else:
        where = f"pasted text {inline_stem(params.scene_text or '')}"
        title = _title(params.scene_text or "")
    name = f"{title} · {where}" if title else where
    overrides = [*params.overrides, *params.typed_overrides()]
    if overrides:
        name += f" [{' '.join(overrides)}]"
    if params.out_dir:
        name += f" → {params.out_dir}"
    return name if len(name) <= 160 else name[:159] + "…"


def _read_head(path: Path, limit: int = 65536) -> str:
    """The first ``limit`` bytes of a YAML scene file, or "" (not a .yaml file, unreadable)."""
    if path.suffix.lower() not in (".yaml", ".yml"):
        return ""
    try:
        with path.open("rb") as f:
            return f.read(limit).decode("utf-8", errors="replace")
    except OSError:
        return ""


def _title(text: str) -> str:
    """The scene's ``title:`` (at most 60 characters), or "" when it has none or does not parse."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        return ""
    title = data.get("title") if isinstance(data, dict) else None
    return " ".join(title.split())[:60] if isinstance(title, str) else ""
