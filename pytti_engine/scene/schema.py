"""The scene file as frozen pydantic v2 models (field names are the YAML keys).

Every model forbids unknown keys. Paths resolve against the scene file's folder, which the loader passes
in the validation context (``context={"base_dir": Path, "names": [...]}``); without a context they resolve
against the current folder. Expressions (:class:`~pytti_engine.scene.expr.Expr`) and prompts
(:class:`~pytti_engine.scene.prompt_dsl.PromptSpec`) are compiled here, once.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    ModelWrapValidatorHandler,
    PlainSerializer,
    PrivateAttr,
    Tag,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.functional_validators import PlainValidator
from pydantic.json_schema import WithJsonSchema
from pydantic_core import PydanticCustomError

from pytti_engine.confine import ConfinementError, Roots, check_input
from pytti_engine.inputs import is_url
from pytti_engine.preflight import url_problem
from pytti_engine.scene.expr import Expr, Interpolation, reserved_names, scene_names
from pytti_engine.scene.prompt_dsl import PromptError, PromptSpec, parse_prompts
from pytti_engine.scene.source import SourceRef, SourceText, locate
from pytti_engine.vqgan_files import KNOWN_VQGANS, vqgan_factor

AnimationMode = Literal["off", "2d", "3d", "video"]
InfillMode = Literal["mirror", "wrap", "black", "smear"]
SamplingMode = Literal["nearest", "bilinear", "bicubic"]
X264Preset = Literal[
    "ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow", "placebo"
]
MAX_FRAMES = 1_000_000  # about a day at 12 fps; a plan is built in memory
MODEL_FILE_SUFFIXES = frozenset({".safetensors", ".pt", ".pth", ".bin", ".ckpt"})


def _base_dir(info: ValidationInfo) -> Path:
    context = info.context if isinstance(info.context, Mapping) else {}
    base = context.get("base_dir")
    return Path(base) if base is not None else Path.cwd()


def _input_roots(info: ValidationInfo) -> Roots | None:
    context = info.context if isinstance(info.context, Mapping) else {}
    roots = context.get("input_roots")
    return roots if isinstance(roots, Roots) else None


def _resolve(value: str | Path, info: ValidationInfo) -> Path:
    """A path of the scene, absolute; refused before any look at the file when it lies outside the
    allowed input roots (``context["input_roots"]``), so the error never tells whether it exists."""
    path = Path(value).expanduser()
    path = path if path.is_absolute() else (_base_dir(info) / path).resolve()
    try:
        check_input(path, info.field_name or "path", _input_roots(info))
    except ConfinementError as e:
        raise _custom_error(str(e)) from None
    return path


def _custom_error(message: str, text: object = None, offset: int = 0) -> PydanticCustomError:
    ctx: dict[str, Any] = {"message": message}
    ref = locate(text, offset) if isinstance(text, str) else None
    if ref is not None:
        ctx.update(path=ref.path, line=ref.line, col=ref.col)
    return PydanticCustomError("scene_value", "{message}", ctx)


UrlText = Annotated[str, Field(pattern=r"^[hH][tT][tT][pP][sS]?://", json_schema_extra={"format": "uri"})]
"""An http(s) URL as written in a scene (fetched into the run directory: :mod:`pytti_engine.fetch`)."""


def _path_or_url(value: Any) -> Any:
    """An ``http(s)://`` URL stays a string (fetched into the run directory at render time,
    :mod:`pytti_engine.fetch`); any other string becomes a path."""
    if isinstance(value, Path):
        return value
    if not isinstance(value, str):
        raise PydanticCustomError("path_type", "expected a file path")
    return value if is_url(value) else Path(value)


def _optional(convert: Callable[[Any], Any]) -> Callable[[Any], Any]:
    return lambda value: None if value is None else convert(value)


def _url_or(check: Callable[[Path, ValidationInfo], Path | None]) -> Callable[..., Path | str | None]:
    """A validator that accepts a well-formed URL as it is and checks a path with ``check``."""

    def validate(value: Path | str | None, info: ValidationInfo) -> Path | str | None:
        if isinstance(value, str):
            problem = url_problem(value)
            if problem:
                raise _custom_error(problem)
            return value
        return None if value is None else check(value, info)

    return validate


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


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
    quick_gelu: bool | None = Field(
        None,
        strict=True,
        description="build with QuickGELU (true: weights trained by OpenAI) or exact GELU (false); "
        "none = the tag's, the folder's or the architecture's, or QuickGELU for a file recognised as "
        "OpenAI's (an unrecognised local file gets a warning)",
    )

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


# ---- audio and output keys (issue 7: audio reactivity, encoding options; docs/outputs.md) -------------

VideoCodec = Literal["h264", "h265", "vp9"]
PixelFormat = Literal["yuv420p", "yuv422p", "yuv444p", "yuv420p10le", "yuv422p10le", "yuv444p10le"]
ExportKind = Literal["depth", "flow"]


def _check_audio_file(value: Path | bool | None, info: ValidationInfo) -> Path | bool | None:
    if value is None or isinstance(value, bool):
        return value
    path = _resolve(value, info)
    from pytti_engine.audio import probe_audio  # runs ffmpeg: only for scenes that name a sound file
    from pytti_engine.errors import PyttiError

    try:
        probe_audio(path)
    except PyttiError as e:
        raise _custom_error(str(e)) from None
    return path


class OutputSettings(_Model):
    """How frames are assembled into videos (docs/outputs.md)."""

    codec: VideoCodec = Field("h264", description="video codec of <stem>.mp4: h264, h265 or vp9")
    crf: int = Field(
        18, ge=0, le=51, strict=True, description="constant rate factor: lower = better (0 = lossless)"
    )
    preset: X264Preset = Field(
        "medium", description="encoder speed/size preset (h264/h265; vp9 maps it to -cpu-used)"
    )
    pix_fmt: PixelFormat = Field("yuv420p", description="pixel format; yuv420p plays everywhere")
    fps: float | None = Field(
        None, gt=0, le=240, description="playback rate of the frames (default: the scene's fps)"
    )
    audio: Annotated[Path | Literal[False] | None, AfterValidator(_check_audio_file)] = Field(
        None,
        description="sound file muxed into the videos, cut to the video's length; default: input_audio; "
        "false = no sound",
    )
    audio_offset: float | None = Field(
        None,
        ge=0,
        description="seconds into the sound file where the video starts (default: input_audio_offset)",
    )
    loop: int = Field(1, ge=1, le=1000, strict=True, description="play the animation this many times")
    boomerang: bool = Field(False, description="play forward then backward (ping-pong)")
    gif: bool = Field(False, description="also write <stem>.gif (palette-optimized, loops forever)")
    webm: bool = Field(False, description="also write <stem>.webm (VP9, Opus sound)")
    interpolate_to: float | None = Field(
        None,
        gt=0,
        le=240,
        description="motion-interpolate the videos to this frame rate (ffmpeg minterpolate)",
    )


class AudioFilter(_Model):
    """A band-pass filter on input_audio; its per-frame envelope is the expression variable ``name``."""

    name: str = Field(description="variable name in expressions; <name>_prev is the previous frame's value")
    f_center: float = Field(gt=0, description="centre frequency in Hz")
    f_width: float = Field(gt=0, description="band width in Hz (the band is f_center ± f_width/2)")
    order: int = Field(5, ge=1, le=16, strict=True, description="Butterworth filter order")

    @field_validator("name")
    @classmethod
    def _usable_name(cls, value: str) -> str:
        if not value.isidentifier() or not value.isascii():
            raise _custom_error(
                f"'{value}' is not a usable name (letters, digits and _, not starting with a digit)"
            )
        if value in reserved_names() or value.endswith("_prev"):
            raise _custom_error(
                f"'{value}' is taken (a built-in name, or ends in _prev); choose another name"
            )
        return value


def audio_variable_names(data: Any) -> list[str]:
    """The band variables (``name``, ``name_prev``) a raw scene mapping defines, for the loader's context."""
    filters = data.get("input_audio_filters") if isinstance(data, Mapping) else None
    if not isinstance(filters, list | tuple):
        return []
    names = [f.get("name") for f in filters if isinstance(f, Mapping)]
    return [v for n in names if isinstance(n, str) and n.isidentifier() for v in (n, f"{n}_prev")]


# ---- end of audio and output keys (helpers) ----


def _validate_prompts(value: Any, info: ValidationInfo) -> tuple[PromptSpec, ...]:
    if isinstance(value, tuple) and all(isinstance(p, PromptSpec) for p in value):
        return value
    text = prompt_text(value)
    if text is None:
        raise _custom_error("prompts must be a string like 'a lighthouse:2 | fog:1' or a list of strings")
    try:
        return parse_prompts(
            text, names=scene_names(info.context), base_dir=_base_dir(info), input_roots=_input_roots(info)
        )
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
        allow_inf_nan=False,
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


# ---- motion keys (issue 4: 3D camera, video source, stabilization; see docs/motion.md) ----------------

FlowModel = Literal["dis", "raft"]
CameraModel = Literal["pinhole", "pytti"]
VIDEO_MASK_SUFFIXES = frozenset({".mp4", ".mov", ".mkv", ".webm", ".avi", ".gif"})


def _split_vector(value: Any) -> Any:
    """``"[a, b, c]"`` -> ``["a", "b", "c"]`` (top-level commas only; source positions kept)."""
    if not isinstance(value, str) or not value.strip().startswith("["):
        return value
    start = value.index("[") + 1
    end = value.rindex("]") if "]" in value else len(value)
    parts: list[str] = []
    depth, begin = 0, start
    for i in range(start, end + 1):
        ch = value[i] if i < end else ","
        depth += ch == "("
        depth -= ch == ")"
        if ch == "," and depth == 0:
            ref = locate(value, begin)
            piece = value[begin:i]
            parts.append(SourceText.at(piece, ref) if ref is not None else piece)
            begin = i + 1
    return parts


def _check_rotation(value: tuple[Expr, ...]) -> tuple[Expr, ...]:
    if len(value) not in (3, 4):
        raise _custom_error(
            f"rotate_3d must be 3 angles [x, y, z] in degrees per frame or a quaternion [w, x, y, z]; "
            f"got {len(value)} values"
        )
    return value


Rotation3D = Annotated[
    tuple[Expr, ...],
    BeforeValidator(_split_vector),
    AfterValidator(_check_rotation),
    PlainSerializer(lambda v: [e.to_json() for e in v], return_type=list),
    WithJsonSchema(
        {
            "anyOf": [
                {
                    "type": "array",
                    "items": {"anyOf": [{"type": "number"}, {"type": "string"}]},
                    "minItems": 3,
                    "maxItems": 4,
                },
                {"type": "string", "description": "'[x, y, z]' degrees or '[w, x, y, z]' quaternion"},
            ]
        }
    ),
]


def _mask_path(value: Path | None, info: ValidationInfo) -> Path | None:
    if value is None:
        return None
    path = _resolve(value, info)
    if not path.is_file():
        raise _custom_error(f"mask file not found: {path}")
    return path


MaskPath = Annotated[Path | None, AfterValidator(_mask_path)]


class Stabilization(_Model):
    """Losses that keep each frame close to the warped previous frame (or the next source frame).

    Each weight is an expression of ``t``; 0 turns the loss off for that frame. Each ``*_mask`` is an
    optional greyscale image or video (white = stabilize, black = free; a video steps with the frames).
    """

    direct: Expr = _expr(0, "MSE to the warped previous frame (video: the source frame), in direct_space")
    semantic: Expr = _expr(
        0, "CLIP distance between cutouts of the frame and of the target, paired by position (+0.7)"
    )
    edge: Expr = _expr(0, "MSE between Sobel edge maps of the frame and the warped previous frame")
    depth: Expr = _expr(0, "MSE between depth maps (needs depth_model) of the frame and the target")
    flow: Expr = _expr(
        0,
        "video: MSE to the flow-warped previous output, masked by flow occlusions; otherwise the optical "
        "flow from the previous frame to this one against the camera's motion (PyTTI's 3D flow loss)",
    )
    direct_space: Literal["hsv", "rgb"] = Field(
        "hsv", description="direct: hsv (PyTTI: MSE over R, G, B, saturation, value) or rgb (R, G, B only)"
    )
    direct_mask: MaskPath = Field(None, description="mask image/video for the direct loss")
    semantic_mask: MaskPath = Field(None, description="mask image/video for the semantic loss")
    edge_mask: MaskPath = Field(None, description="mask image/video for the edge loss")
    depth_mask: MaskPath = Field(None, description="mask image/video for the depth loss")
    flow_mask: MaskPath = Field(None, description="mask image/video for the flow loss")


def _is_zero(expr: Expr) -> bool:
    return expr.is_constant and expr.value == 0


def _check_depth_model(value: str | None, info: ValidationInfo) -> str | None:
    if value is None or value == "flat":
        return value
    folder = _resolve(value, info)
    if folder.is_dir():
        problem = depth_folder_problem(folder)
        if problem:
            raise _custom_error(f"depth_model folder {folder}: {problem}")
        return str(folder)
    if not re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", value) or value.startswith("."):
        raise _custom_error(f"depth_model folder not found: {folder} (give a folder, a hub id, or 'flat')")
    # A hub id such as depth-anything/Depth-Anything-V2-Small-hf: it must already be in the HF cache.
    from huggingface_hub import try_to_load_from_cache

    if not isinstance(try_to_load_from_cache(value, "config.json"), str):
        raise _custom_error(
            f"depth_model {value!r} is neither a folder nor in the Hugging Face cache "
            f"(download it with `hf download {value}`, or give its folder)"
        )
    return value


def depth_folder_problem(folder: Path) -> str | None:
    """Why ``folder`` is not a transformers depth-estimation model folder, or ``None`` when it is."""
    config = folder / "config.json"
    if not config.is_file():
        return "no config.json (expected a transformers folder: config.json + model.safetensors)"
    try:
        data = json.loads(config.read_text())
    except (OSError, ValueError) as e:
        return f"config.json is not valid JSON ({e})"
    archs = data.get("architectures") or []
    if not any(str(a).endswith("ForDepthEstimation") for a in archs):
        return f"config.json does not describe a depth-estimation model (architectures: {archs})"
    if not any((folder / f).is_file() for f in ("model.safetensors", "pytorch_model.bin")):
        return "no model.safetensors or pytorch_model.bin"
    return None


def _check_video(value: Path | None, info: ValidationInfo) -> Path | None:
    if value is None:
        return None
    path = _resolve(value, info)
    if not path.is_file():
        raise _custom_error(f"video_path not found: {path}")
    from pytti_engine.errors import FFmpegError
    from pytti_engine.video import probe_video

    try:
        probe_video(path)
    except FFmpegError as e:
        raise _custom_error(f"video_path {path} is not a readable video: {e}") from None
    return path


def _check_weights(value: Path | None, info: ValidationInfo) -> Path | None:
    if value is None:
        return None
    path = _resolve(value, info)
    if not path.is_file():
        raise _custom_error(f"flow_weights file not found: {path}")
    return path


# ---- engine keys (issue 8: image models, losses, optimizer; docs/engine.md) -------------------------

ImageModel = Literal["unlimited_palette", "limited_palette", "vqgan"]
VQGANName = Literal["imagenet", "wikiart", "sflckr", "coco", "openimages"]
VQGANWarp = Literal["pixels", "latent"]
DEFAULT_VQGAN = "imagenet"
BorderMode = Literal["clamp", "mirror", "wrap", "black", "smear"]


def _check_image_file(value: Path | None, info: ValidationInfo) -> Path | None:
    if value is None:
        return None
    path = _resolve(value, info)
    if not path.is_file():
        raise _custom_error(f"image not found: {path}")
    return path


class DirectImagePrompt(_Model):
    """A direct image prompt: pull the pixels toward a picture (HSV mean squared error)."""

    image: Annotated[
        Path | UrlText, BeforeValidator(_path_or_url), AfterValidator(_url_or(_check_image_file))
    ] = Field(
        description="the target picture, relative to the scene file, or an http(s) URL (resized to the image size)"
    )
    weight: float = Field(1.0, strict=True, description="loss weight; negative pushes away")
    stop: float | None = Field(None, strict=True, description="gradient gate as for prompts; none = no gate")


def _check_model_file(value: Path, info: ValidationInfo) -> Path:
    path = _resolve(value, info)
    if not path.is_file():
        raise _custom_error(f"file not found: {path}")
    return path


class VQGANFilePair(_Model):
    """Any taming-transformers VQGAN: its model config and its Lightning checkpoint."""

    config: Annotated[Path, AfterValidator(_check_model_file)] = Field(
        description="the taming model config (.yaml), relative to the scene file"
    )
    checkpoint: Annotated[Path, AfterValidator(_check_model_file)] = Field(
        description="the checkpoint (.ckpt with a state_dict), relative to the scene file"
    )


def _known_vqgan_name(value: Any) -> Any:
    if isinstance(value, str) and value not in KNOWN_VQGANS:
        import difflib

        close = difflib.get_close_matches(value, list(KNOWN_VQGANS), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise _custom_error(
            f"unknown VQGAN '{value}'{hint}: one of {', '.join(KNOWN_VQGANS)}, "
            "or {config: FILE.yaml, checkpoint: FILE.ckpt}"
        )
    return value


def _vqgan_branch(value: Any) -> str:
    return "name" if isinstance(value, str) else "files"


VQGANModel = Annotated[
    Annotated[VQGANName, Tag("name")] | Annotated[VQGANFilePair, Tag("files")], Discriminator(_vqgan_branch)
]


def _check_models_dir(value: Path | None, info: ValidationInfo) -> Path | None:
    if value is None:
        return None
    path = _resolve(value, info)
    if not path.is_dir():
        raise _custom_error(f"models_dir folder not found: {path}")
    return path


def _round_size(data: Mapping[str, Any], info: ValidationInfo) -> tuple[dict[str, Any], tuple[str, ...]]:
    """vqgan: width/height rounded down to the model's factor (as PyTTI does), and what was rounded."""
    model = data.get("vqgan_model") or DEFAULT_VQGAN
    roots, config = _input_roots(info), model.get("config") if isinstance(model, Mapping) else None
    if (
        roots is not None
        and isinstance(config, str)
        and not roots.allows(_base_dir(info) / Path(config).expanduser())
    ):
        return dict(data), ()  # outside the allowed folders: never read; the config field says so
    factor = vqgan_factor(model, _base_dir(info)) if isinstance(model, str | Mapping) else None
    if factor is None:
        return dict(data), ()
    out, notes = dict(data), []
    for key in ("width", "height"):
        value = data.get(key, Scene.model_fields[key].default)
        if isinstance(value, bool) or not isinstance(value, int) or value % factor == 0:
            continue
        if value < factor:
            message = f"{key} must be at least {factor} for this VQGAN (its latent cells are {factor} pixels)"
            raise PydanticCustomError("scene_value", "{message}", {"message": message, "loc": (key,)})
        out[key] = value // factor * factor
        notes.append(
            f"{key} {value} rounded down to {out[key]} (a multiple of the VQGAN's {factor}-pixel cells)"
        )
    return out, tuple(notes)


# ---- end of engine keys (helpers) ----


class Scene(_Model):
    """A whole scene file."""

    title: str | None = Field(None, description="a human-readable title")
    width: int = Field(256, ge=16, le=8192, strict=True, description="image width in pixels")
    height: int = Field(256, ge=16, le=8192, strict=True, description="image height in pixels")
    fps: float = Field(12, gt=0, le=240, strict=True, description="frames per second; t = frame / fps")
    seed: int = Field(
        0,
        ge=-(2**63),
        le=2**64 - 1,
        strict=True,
        description="random seed (frame k uses a generator seeded by (seed, k)); a 64-bit integer",
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
    learning_rate: float | None = Field(
        None,
        gt=0,
        strict=True,
        description="Adam learning rate; null: the image model's own (0.02 for both palettes, vqgan 0.1 or 0.15)",
    )
    pre_animation_steps: int = Field(
        0,
        ge=0,
        strict=True,
        description="extra optimizer steps on frame 1, before the first camera move (t < 0 during them)",
    )
    init_image: Annotated[Path | UrlText | None, BeforeValidator(_optional(_path_or_url))] = Field(
        None, description="start image, relative to the scene file, or an http(s) URL"
    )
    # ---- engine keys (issue 8; docs/engine.md) ----
    image_model: ImageModel = Field(
        "unlimited_palette",
        description="unlimited_palette (free RGB), limited_palette (pixel-art palettes) or vqgan "
        "(a VQGAN's latent grid: see vqgan_model)",
    )
    pixel_size: int = Field(
        1,
        ge=1,
        strict=True,
        description="output pixels per image-model pixel; width and height must be multiples",
    )
    palette_size: int = Field(5, ge=1, strict=True, description="limited_palette: colours per palette")
    palettes: int = Field(20, ge=1, strict=True, description="limited_palette: number of palettes")
    gamma: float = Field(1.0, gt=0, strict=True, description="limited_palette: palette brightness curve")
    hdr_weight: float = Field(
        0.01, strict=True, description="limited_palette: weight of the HDR palette loss"
    )
    palette_normalization_weight: float = Field(
        0.2, strict=True, description="limited_palette: weight of the palette normalization loss"
    )
    random_initial_palette: bool = Field(
        False, description="limited_palette: start from random palettes instead of grey ramps"
    )
    target_palette: Annotated[Path | None, AfterValidator(_check_image_file)] = Field(
        None, description="limited_palette: a picture whose palette is fitted once and locked"
    )
    lock_palette: bool = Field(False, description="limited_palette: freeze the initial palette")
    ema_decay: float | None = Field(
        None, ge=0, lt=1, strict=True, description="output shows an EMA of the image parameters (e.g. 0.99)"
    )
    smoothing_weight: float = Field(
        0.02, strict=True, description="TV smoothing loss weight (negative sharpens)"
    )
    direct_init_weight: float = Field(
        0.0, strict=True, description="pull toward init_image's pixels (HSV MSE)"
    )
    semantic_init_weight: float = Field(
        0.0, strict=True, description="an image prompt of init_image, this weight"
    )
    direct_image_prompts: tuple[DirectImagePrompt, ...] = Field(
        (), description="pictures the pixels are pulled toward (HSV MSE), each with a weight"
    )
    reset_lr_each_frame: bool = Field(
        False, description="start every frame with fresh Adam moments instead of the warped previous ones"
    )
    gradient_accumulation_steps: int = Field(
        1, ge=1, strict=True, description="split each step's cutouts into this many batches (less memory)"
    )
    cutout_border: float = Field(
        0.25, ge=0, strict=True, description="how far cutouts may reach outside the image (fraction of size)"
    )
    border_mode: BorderMode = Field(
        "clamp", description="cutouts past the edge: clamp, mirror, wrap, black, smear"
    )
    mixed_precision: bool = Field(True, description="CUDA only: bf16 autocast for the perceptor forward")
    vqgan_model: Annotated[VQGANModel | None, BeforeValidator(_known_vqgan_name)] = Field(
        None,
        description="vqgan: imagenet (default), wikiart, sflckr, coco, openimages (gumbel f8), or "
        "{config: FILE.yaml, checkpoint: FILE.ckpt} for any taming-transformers VQGAN",
    )
    models_dir: Annotated[Path | None, AfterValidator(_check_models_dir)] = Field(
        None,
        description="folder holding vqgan/<name>.yaml and .ckpt (PyTTI's models_parent_dir); also searched: "
        "$PYTTI_MODELS_DIR, ~/.cache, the Hugging Face cache",
    )
    vqgan_warp: VQGANWarp = Field(
        "pixels",
        description="vqgan: how motion moves the image: pixels (decode, warp, re-encode: PyTTI's) or "
        "latent (warp the latent grid and Adam's moments: no encoder pass)",
    )
    _notes: tuple[str, ...] = PrivateAttr(default=())

    @model_validator(mode="wrap")
    @classmethod
    def _vqgan_grid(cls, data: Any, handler: ModelWrapValidatorHandler[Self], info: ValidationInfo) -> Self:
        notes: tuple[str, ...] = ()
        if isinstance(data, Mapping) and data.get("image_model") == "vqgan":
            data, notes = _round_size(data, info)
        scene = handler(data)
        if notes:
            scene._notes = notes
        return scene

    @property
    def notes(self) -> tuple[str, ...]:
        """What validation changed and the user should hear about (a VQGAN size rounded down)."""
        return self._notes

    @property
    def vqgan(self) -> str | VQGANFilePair:
        """The VQGAN a ``vqgan`` scene uses (``vqgan_model``, ``imagenet`` when unset)."""
        return self.vqgan_model or DEFAULT_VQGAN

    @model_validator(mode="after")
    def _engine_keys_fit(self) -> Scene:
        problems = []
        if self.image_model == "vqgan" and self.pixel_size != 1:
            problems.append(
                (
                    "pixel_size",
                    "vqgan renders at width x height; pixel_size must be 1 (PyTTI's pixel_size multiplies "
                    "the VQGAN's resolution, which width/height already are here)",
                )
            )
        if self.image_model != "vqgan" and self.vqgan_model is not None:
            problems.append(("vqgan_model", "vqgan_model needs image_model: vqgan"))
        if self.image_model != "vqgan" and self.vqgan_warp != "pixels":
            problems.append(("vqgan_warp", "vqgan_warp needs image_model: vqgan"))
        if self.width % self.pixel_size or self.height % self.pixel_size:
            problems.append(
                ("pixel_size", f"width and height must be multiples of pixel_size {self.pixel_size}")
            )
        if self.cutouts % self.gradient_accumulation_steps:
            problems.append(("gradient_accumulation_steps", "must divide cutouts"))
        if (self.direct_init_weight or self.semantic_init_weight) and self.init_image is None:
            problems.append(("init_image", "direct_init_weight/semantic_init_weight need an init_image"))
        if (self.target_palette is not None or self.lock_palette) and self.image_model != "limited_palette":
            problems.append(("image_model", "target_palette/lock_palette need image_model: limited_palette"))
        for key, message in problems[:1]:
            raise PydanticCustomError("scene_value", "{message}", {"message": message, "loc": (key,)})
        return self

    # ---- end of engine keys ----
    animation: AnimationMode = Field("off", description="off (no motion between frames) or 2d")
    translate_x: Expr = _expr(0, "2d: pixels per frame, + = right; expression of t or keyframes")
    translate_y: Expr = _expr(0, "2d: pixels per frame, + = up (as in PyTTI); expression of t or keyframes")
    rotate_2d: Expr = _expr(0, "2d: degrees per frame, + = counter-clockwise; expression of t or keyframes")
    zoom: Expr = _expr(
        1, "2d: scale factor per frame (1 = none, > 1 zooms in); must stay > 0; expression or keyframes"
    )
    # ---- motion keys (issue 4; docs/motion.md) ----
    zoom_x: Expr = _expr(1, "2d: extra horizontal scale factor per frame, multiplied with zoom; > 0")
    zoom_y: Expr = _expr(1, "2d: extra vertical scale factor per frame, multiplied with zoom; > 0")
    translate_z: Expr = _expr(0, "3d: pixels per frame toward the viewer (+ = fly forward); expression")
    rotate_3d: Rotation3D = Field(
        (0, 0, 0),
        validate_default=True,
        description="3d: [x, y, z] degrees per frame (+ = counter-clockwise about each axis; x right, "
        "y up, z toward the viewer) or a unit quaternion [w, x, y, z]; each entry an expression",
    )
    field_of_view: float = Field(60, gt=0, lt=180, description="3d: vertical field of view in degrees")
    near_plane: float = Field(200, gt=0, description="3d: depth (pixels) of the nearest point of the image")
    far_plane: float = Field(10000, gt=0, description="3d: depth (pixels) of the farthest point of the image")
    lock_camera: bool = Field(True, description="3d: remove the mean image drift (parallax only, no scroll)")
    depth_model: Annotated[str | None, AfterValidator(_check_depth_model)] = Field(
        None,
        description="3d: a transformers depth-estimation folder (Depth-Anything-V2), a hub id in the HF "
        "cache, or 'flat' (constant depth, flat_depth or the focal distance: no parallax)",
    )
    flat_depth: float | None = Field(
        None,
        gt=0,
        description="3d, depth_model: flat: the depth of every pixel (pixels; default the focal length)",
    )
    camera_model: CameraModel = Field(
        "pinhole",
        description="3d: pinhole (exact reprojection through the depth) or pytti (pytti-core's formula, "
        "for imported configs)",
    )
    video_path: Annotated[
        Path | UrlText | None, BeforeValidator(_optional(_path_or_url)), AfterValidator(_url_or(_check_video))
    ] = Field(None, description="video: the source video, relative to the scene file, or an http(s) URL")
    frame_stride: int = Field(1, ge=1, strict=True, description="video: source frames per output frame")
    flow_model: FlowModel = Field(
        "dis", description="video: dis (OpenCV, no weights) or raft (needs weights)"
    )
    flow_weights: Annotated[Path | None, AfterValidator(_check_weights)] = Field(
        None, description="video: torchvision RAFT weights file (.pth) for flow_model: raft"
    )
    reencode_each_frame: bool = Field(
        False, description="video: start every frame from the source frame instead of the warped output"
    )
    stabilization: Stabilization = Field(Stabilization(), description="stabilization loss weights")
    # ---- end of motion keys ----
    infill_mode: InfillMode = Field("wrap", description="how pixels entering from the edge are filled")
    sampling_mode: SamplingMode = Field("bilinear", description="resampling used by the warp")
    keyframe_interpolation: Interpolation = Field(
        "linear", description="blend between keyframes: linear, step, smooth (ease in-out) or cubic"
    )
    scene_prefix: str = Field("", description="text put before every scene's prompts (plain concatenation)")
    scene_suffix: str = Field("", description="text put after every scene's prompts (plain concatenation)")
    scenes: tuple[Stage, ...] = Field(min_length=1, description="the scenes, played in order")
    # ---- run directory (issue 5) ----
    keep_checkpoints: str = Field(
        "all",
        pattern=r"^(all|last:[1-9][0-9]*|every:[1-9][0-9]*)$",
        description="checkpoints to keep: all, last:K or every:K (the newest is always kept)",
    )
    # ---- audio and output keys (issue 7; docs/outputs.md) ----
    input_audio: Annotated[Path | None, AfterValidator(_check_audio_file)] = Field(
        None, description="sound file whose bands drive expressions (any format ffmpeg reads)"
    )
    input_audio_offset: float = Field(0.0, ge=0, description="seconds into input_audio at which t = 0")
    input_audio_filters: tuple[AudioFilter, ...] = Field(
        (), description="band-pass filters; each name becomes an expression variable in [0, 1]"
    )
    tensorboard: bool = Field(False, description="write TensorBoard event files to <run>/tensorboard")
    tensorboard_image_every: int = Field(
        10, ge=1, strict=True, description="with tensorboard: log the image every this many frames"
    )
    export: tuple[ExportKind, ...] = Field(
        (),
        description="extra per-frame outputs: depth (PNGs in <run>/depth + <stem>_depth.mp4), "
        "flow (motion fields in <run>/flow + <stem>_flow.mp4)",
    )
    output: OutputSettings = Field(OutputSettings(), description="video encoding")

    @model_validator(mode="after")
    def _audio_and_output_fit(self) -> Scene:
        problem = self._audio_problem() or self._output_problem()
        if problem is not None:
            raise PydanticCustomError("scene_value", "{message}", {"message": problem[1], "loc": problem[0]})
        return self

    def _audio_problem(self) -> tuple[tuple[str | int, ...], str] | None:
        names = [f.name for f in self.input_audio_filters]
        for i, name in enumerate(names):
            if name in names[:i]:
                return ("input_audio_filters", i, "name"), f"duplicate filter name '{name}'"
        if self.input_audio is None:
            if self.input_audio_filters:
                return ("input_audio_filters",), "input_audio_filters need input_audio (a sound file)"
            return None
        from pytti_engine.audio import BandFilter, check_filters, probe_audio
        from pytti_engine.errors import PyttiError

        info = probe_audio(self.input_audio)
        if info.duration is not None and self.input_audio_offset >= info.duration:
            message = f"{self.input_audio_offset:g} s is past the end of input_audio ({info.duration:g} s)"
            return ("input_audio_offset",), message
        rate = info.sample_rate
        for i, f in enumerate(self.input_audio_filters):
            try:
                check_filters([BandFilter(f.name, f.f_center, f.f_width, f.order)], rate)
            except PyttiError as e:
                return ("input_audio_filters", i, "f_center"), str(e)
        return None

    def _output_problem(self) -> tuple[tuple[str | int, ...], str] | None:
        fps = self.output.fps or self.fps
        if self.output.interpolate_to is not None and self.output.interpolate_to <= fps:
            message = (
                f"interpolate_to ({self.output.interpolate_to:g}) must be above the video's fps ({fps:g})"
            )
            return ("output", "interpolate_to"), message
        if "depth" in self.export and self.depth_model is None:
            return ("export",), "exporting depth needs depth_model (a depth model folder, or 'flat')"
        return None

    # ---- end of audio and output keys ----

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
    def _init_image_exists(cls, value: Path | str | None, info: ValidationInfo) -> Path | str | None:
        if value is None or isinstance(value, str):
            return _url_or(_check_image_file)(value, info)
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

    @field_validator("zoom_x", "zoom_y")
    @classmethod
    def _axis_zoom_positive(cls, value: Expr) -> Expr:
        return cls._zoom_positive(value)

    @model_validator(mode="after")
    def _motion_consistent(self) -> Scene:
        problem: tuple[str, str] | None = None
        if self.near_plane >= self.far_plane:
            problem = (
                "far_plane",
                f"far_plane ({self.far_plane:g}) must exceed near_plane ({self.near_plane:g})",
            )
        elif self.animation == "3d" and self.depth_model is None:
            problem = (
                "depth_model",
                "animation: 3d needs depth_model: a model folder, or 'flat' for no parallax",
            )
        elif self.animation == "video" and self.video_path is None:
            problem = ("video_path", "animation: video needs video_path")
        elif not _is_zero(self.stabilization.depth) and self.depth_model in (None, "flat"):
            problem = (
                "depth_model",
                "stabilization.depth needs depth_model: a depth model folder (not flat)",
            )
        elif self.flow_model == "raft" and self.flow_weights is None:
            problem = ("flow_weights", "flow_model: raft needs flow_weights (a torchvision RAFT .pth file)")
        if problem is not None:
            raise PydanticCustomError(
                "scene_value", "{message}", {"message": problem[1], "loc": (problem[0],)}
            )
        return self

    @model_validator(mode="after")
    def _transitions_fit(self) -> Scene:
        total = self.total_frames
        if total > MAX_FRAMES:
            message = (
                f"the scenes add up to {total} frames; at most {MAX_FRAMES} are allowed in one scene file"
            )
            raise PydanticCustomError("scene_value", "{message}", {"message": message, "loc": ("scenes",)})
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
    "AudioFilter",
    "InfillMode",
    "OutputSettings",
    "PerceptorSpec",
    "SamplingMode",
    "Scene",
    "SourceRef",
    "Stabilization",
    "Stage",
    "VQGANFilePair",
]
