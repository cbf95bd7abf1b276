"""The scene language: scene files, prompts, expressions, keyframes and the per-frame plan.

Pure Python (pydantic + PyYAML): nothing here imports torch. Typical use::

    scene = load_scene("scenes/demo.yaml", overrides=["steps_per_frame=20"])
    plan = build_plan(scene)
    for frame in plan.frames: ...
"""

from __future__ import annotations

from pytti_engine.scene.expr import BASE_NAMES, Expr, ExprError, ExprEvalError, Interpolation, compile_value
from pytti_engine.scene.json_schema import scene_json_schema
from pytti_engine.scene.load import SceneSource, SourceMap, apply_overrides, load_scene, load_scene_text
from pytti_engine.scene.plan import FramePlan, MaskValue, Plan, PromptValue, build_plan
from pytti_engine.scene.prompt_dsl import (
    ImageMask,
    Mask,
    PositionMask,
    PromptError,
    PromptSpec,
    TextMask,
    VideoMask,
    parse_prompts,
)
from pytti_engine.scene.pytti_import import import_pytti_config
from pytti_engine.scene.schema import OutputSettings, PerceptorSpec, Scene, Stage
from pytti_engine.scene.source import SourceRef, SourceText

__all__ = [
    "BASE_NAMES",
    "Expr",
    "ExprError",
    "ExprEvalError",
    "FramePlan",
    "ImageMask",
    "Interpolation",
    "Mask",
    "MaskValue",
    "OutputSettings",
    "PerceptorSpec",
    "Plan",
    "PositionMask",
    "PromptError",
    "PromptSpec",
    "PromptValue",
    "Scene",
    "SceneSource",
    "SourceMap",
    "SourceRef",
    "SourceText",
    "Stage",
    "TextMask",
    "VideoMask",
    "apply_overrides",
    "build_plan",
    "import_pytti_config",
    "compile_value",
    "load_scene",
    "load_scene_text",
    "parse_prompts",
    "scene_json_schema",
]
