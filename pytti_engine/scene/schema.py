"""The scene file as frozen pydantic v2 models (field names are the YAML keys).

Every model forbids unknown keys. Paths resolve against the scene file's folder, which the loader passes
in the validation context (``context={"base_dir": Path, "names": [...]}``); without a context they resolve
against the current folder. Expressions (:class:`~pytti_engine.scene.expr.Expr`) and prompts
(:class:`~pytti_engine.scene.prompt_dsl.PromptSpec`) are compiled here, once.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.functional_validators import PlainValidator
from pydantic.json_schema import WithJsonSchema
from pydantic_core import PydanticCustomError

from pytti_engine.scene.expr import Expr, Interpolation, scene_names
from pytti_engine.scene.prompt_dsl import PromptError, PromptSpec, parse_prompts
from pytti_engine.scene.source import SourceRef, SourceText, locate

AnimationMode = Literal["off", "2d"]
InfillMode = Literal["mirror", "wrap", "black", "smear"]
SamplingMode = Literal["nearest", "bilinear", "bicubic"]
X264Preset = Literal[
    "ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow", "placebo"
]
MODEL_FILE_SUFFIXES = frozenset({".safetensors", ".pt", ".pth", ".bin", ".ckpt"})


def _base_dir(info: ValidationInfo) -> Path:
    context = info.context if isinstance(info.context, Mapping) else {}
    base = context.get("base_dir")
    return Path(base) if base is not None else Path.cwd()


def _resolve(value: str | Path, info: ValidationInfo) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else (_base_dir(info) / path).resolve()


def _custom_error(message: str, text: object = None, offset: int = 0) -> PydanticCustomError:
    ctx: dict[str, Any] = {"message": message}
    ref = locate(text, offset) if isinstance(text, str) else None
    if ref is not None:
        ctx.update(path=ref.path, line=ref.line, col=ref.col)
    return PydanticCustomError("scene_value", "{message}", ctx)


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class PerceptorSpec(_Model):
    """One CLIP perceptor (any open_clip model); several are averaged by weight."""

    model: str = Field(
        description="open_clip model name (ViT-B-32, ...) or 'local-dir:/path' (open_clip layout)"
    )
    pretrained: str | None = Field(
        None,
        description="open_clip pretrained tag ('openai', ...) or a weights file path; none = random init",
    )
    weight: float = Field(1.0, strict=True, description="relative weight of this perceptor's loss")

    @field_validator("model")
    @classmethod
    def _resolve_local_dir(cls, value: str, info: ValidationInfo) -> str:
        if not value.strip():
            raise _custom_error("model must not be empty")
        if not value.startswith("local-dir:"):
            return value
        folder = _resolve(value.removeprefix("local-dir:"), info)
        if not folder.is_dir():
            raise _custom_error(f"local-dir model folder not found: {folder}")
        return f"local-dir:{folder}"

    @field_validator("pretrained")
    @classmethod
    def _resolve_weights_path(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None or not looks_like_path(value):
            return value
        path = _resolve(value, info)
        if not path.is_file():
            raise _custom_error(f"pretrained weights file not found: {path}")
        return str(path)

    @field_validator("weight")
    @classmethod
    def _finite_weight(cls, value: float) -> float:
        if not math.isfinite(value):
            raise _custom_error("weight must be a finite number")
        return value


def looks_like_path(pretrained: str) -> bool:
    """True when a ``pretrained`` value is a file path rather than an open_clip tag like ``openai``."""
    return (
        "/" in pretrained
        or "\\" in pretrained
        or pretrained.startswith(("~", "."))
        or Path(pretrained).suffix.lower() in MODEL_FILE_SUFFIXES
    )


class OutputSettings(_Model):
    """How frames are assembled into the video (H.264, yuv420p)."""

    crf: int = Field(18, ge=0, le=51, strict=True, description="x264 constant rate factor (0 = lossless)")
    preset: X264Preset = Field("medium", description="x264 speed/size preset")


def _validate_prompts(value: Any, info: ValidationInfo) -> tuple[PromptSpec, ...]:
    if isinstance(value, tuple) and all(isinstance(p, PromptSpec) for p in value):
        return value
    text = prompt_text(value)
    if text is None:
        raise _custom_error("prompts must be a string like 'a lighthouse:2 | fog:1' or a list of strings")
    try:
        return parse_prompts(text, names=scene_names(info.context), base_dir=_base_dir(info))
    except PromptError as e:
        raise _custom_error(e.message, text, e.offset) from None


def prompt_text(value: Any) -> str | None:
    """The prompt string of a stage's ``prompts`` value (a string, or a list joined with ``|``)."""
    if isinstance(value, str):
        return value
    if isinstance(value, list | tuple) and value and all(isinstance(v, str) for v in value):
        parts: list[str] = []
        for i, v in enumerate(value):
            parts += [" | ", v] if i else [v]
        return SourceText.concat(parts)
    return None


def _serialize_prompts(prompts: tuple[PromptSpec, ...]) -> str:
    return " | ".join(p.to_source() for p in prompts)


Prompts = Annotated[
    tuple[PromptSpec, ...],
    PlainValidator(_validate_prompts),
    PlainSerializer(_serialize_prompts, return_type=str),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "description": "prompts separated by '|': text:weight:stop_mask"},
                {"type": "array", "items": {"type": "string"}, "minItems": 1},
            ]
        }
    ),
]


class Stage(_Model):
    """One scene of the animation: its prompts and how long it lasts."""

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        json_schema_extra={"oneOf": [{"required": ["frames"]}, {"required": ["seconds"]}]},
    )

    prompts: Prompts = Field(description="the prompt language: 'text:weight:stop_mask | ...'")
    frames: int | None = Field(None, ge=1, strict=True, description="length in frames (or give seconds)")
    seconds: float | None = Field(
        None, gt=0, strict=True, description="length in seconds (rounded to frames)"
    )
    transition_frames: int = Field(
        0, ge=0, strict=True, description="frames over which the previous scene's prompts fade out"
    )

    @model_validator(mode="after")
    def _one_length(self) -> Stage:
        if (self.frames is None) == (self.seconds is None):
            raise ValueError("give exactly one of 'frames' or 'seconds'")
        return self

    def frame_count(self, fps: float) -> int:
        """The stage's length in frames (``seconds`` rounds half up, at least 1)."""
        if self.frames is not None:
            return self.frames
        assert self.seconds is not None  # _one_length guarantees one of them
        return max(1, math.floor(self.seconds * fps + 0.5))


def _expr(default: float, description: str) -> Any:
    return Field(Expr.constant(default), description=description)


class Scene(_Model):
    """A whole scene file."""

    title: str | None = Field(None, description="a human-readable title")
    width: int = Field(256, ge=16, le=8192, strict=True, description="image width in pixels")
    height: int = Field(256, ge=16, le=8192, strict=True, description="image height in pixels")
    fps: float = Field(12, gt=0, le=240, strict=True, description="frames per second; t = frame / fps")
    seed: int = Field(
        0, strict=True, description="random seed (frame k uses a generator seeded by (seed, k))"
    )
    steps_per_frame: int = Field(50, ge=0, strict=True, description="optimizer steps per frame")
    perceptors: tuple[PerceptorSpec, ...] = Field(
        (PerceptorSpec(model="ViT-B-32", pretrained="openai"),),
        min_length=1,
        description="CLIP models guiding the image",
    )
    cutouts: int = Field(16, ge=1, strict=True, description="cutouts per perceptor per step")
    cut_pow: float = Field(
        2.0, gt=0, strict=True, description="cutout size exponent (higher = smaller cutouts)"
    )
    learning_rate: float = Field(0.02, gt=0, strict=True, description="Adam learning rate")
    init_image: Path | None = Field(None, description="start image, relative to the scene file")
    animation: AnimationMode = Field("off", description="off (no motion between frames) or 2d")
    translate_x: Expr = _expr(0, "2d: pixels per frame, + = right; expression of t or keyframes")
    translate_y: Expr = _expr(0, "2d: pixels per frame, + = up (as in PyTTI); expression of t or keyframes")
    rotate_2d: Expr = _expr(0, "2d: degrees per frame, + = counter-clockwise; expression of t or keyframes")
    zoom: Expr = _expr(
        1, "2d: scale factor per frame (1 = none, > 1 zooms in); must stay > 0; expression or keyframes"
    )
    infill_mode: InfillMode = Field("wrap", description="how pixels entering from the edge are filled")
    sampling_mode: SamplingMode = Field("bilinear", description="resampling used by the warp")
    keyframe_interpolation: Interpolation = Field(
        "linear", description="blend between keyframes: linear, step, smooth (ease in-out) or cubic"
    )
    scene_prefix: str = Field("", description="text put before every scene's prompts (plain concatenation)")
    scene_suffix: str = Field("", description="text put after every scene's prompts (plain concatenation)")
    scenes: tuple[Stage, ...] = Field(min_length=1, description="the scenes, played in order")
    output: OutputSettings = Field(OutputSettings(), description="video encoding")

    @model_validator(mode="before")
    @classmethod
    def _apply_prefix_suffix(cls, data: Any) -> Any:
        if not isinstance(data, Mapping) or not isinstance(data.get("scenes"), list | tuple):
            return data
        prefix, suffix = data.get("scene_prefix", ""), data.get("scene_suffix", "")
        if not isinstance(prefix, str) or not isinstance(suffix, str) or not (prefix or suffix):
            return data
        stages = [_prefixed_stage(s, prefix, suffix) for s in data["scenes"]]
        return {**data, "scenes": stages}

    @field_validator("init_image")
    @classmethod
    def _init_image_exists(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if value is None:
            return None
        path = _resolve(value, info)
        if not path.is_file():
            raise _custom_error(f"init image not found: {path}")
        return path

    @field_validator("zoom")
    @classmethod
    def _zoom_positive(cls, value: Expr) -> Expr:
        if value.is_constant and value.value <= 0:
            raise _custom_error(f"must be > 0 (a scale factor per frame: 1 = no zoom), got {value.value:g}")
        return value

    @model_validator(mode="after")
    def _transitions_fit(self) -> Scene:
        for i, stage in enumerate(self.scenes):
            if stage.transition_frames == 0:
                continue
            where = ("scenes", i, "transition_frames")
            if i == 0:
                raise PydanticCustomError(
                    "scene_value",
                    "{message}",
                    {"message": "the first scene has no previous scene to blend from", "loc": where},
                )
            length = stage.frame_count(self.fps)
            if stage.transition_frames > length:
                message = f"transition_frames ({stage.transition_frames}) is longer than the scene ({length} frames)"
                raise PydanticCustomError("scene_value", "{message}", {"message": message, "loc": where})
        return self

    def stage_frame_counts(self) -> tuple[int, ...]:
        """Each scene's length in frames."""
        return tuple(stage.frame_count(self.fps) for stage in self.scenes)

    @property
    def total_frames(self) -> int:
        """The number of frames in the whole animation."""
        return sum(self.stage_frame_counts())


def _prefixed_stage(stage: Any, prefix: str, suffix: str) -> Any:
    if not isinstance(stage, Mapping):
        return stage
    text = prompt_text(stage.get("prompts"))
    if text is None:
        return stage
    return {**stage, "prompts": SourceText.concat([prefix, text, suffix])}


__all__ = [
    "AnimationMode",
    "InfillMode",
    "OutputSettings",
    "PerceptorSpec",
    "SamplingMode",
    "Scene",
    "SourceRef",
    "Stage",
]
