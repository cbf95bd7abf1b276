"""Convert a pytti-core config (Hydra ``default.yaml`` keys, ``conf/*.yaml``) into a scene file.

pytti-core's clock is steps: every scene runs ``steps_per_scene`` optimizer steps and a frame is
``steps_per_frame`` steps. Here every scene has a number of frames, so a scene becomes
``round(steps_per_scene / steps_per_frame)`` frames and ``interpolation_steps`` becomes
``transition_frames`` the same way. Values the user did not set take pytti-core's defaults (so a
converted file renders what pytti would have), settings that only concern pytti's notebook UI or its
output folder are ignored silently, and every other setting that cannot be carried over is reported
as a warning. The result is YAML text; load it with :func:`~pytti_engine.scene.load_scene_text`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, get_args

import yaml

from pytti_engine.errors import SceneError
from pytti_engine.scene.expr import ExprError, compile_expression
from pytti_engine.scene.schema import AnimationMode, Scene

#: pytti-core's ``default.yaml`` values for the settings this converter reads.
PYTTI_DEFAULTS: Mapping[str, Any] = MappingProxyType(
    {
        "scene_prefix": "",
        "scene_suffix": "",
        "init_image": "",
        "width": 512,
        "height": 512,
        "steps_per_scene": 100,
        "steps_per_frame": 50,
        "interpolation_steps": 0,
        "learning_rate": None,
        "seed": None,
        "cutouts": 40,
        "cut_pow": 2,
        "animation_mode": "off",
        "frames_per_second": 12,
        "pre_animation_steps": 50,
        "translate_x": "0",
        "translate_y": "0",
        "translate_z_3d": "0",
        "rotate_3d": "[1, 0, 0, 0]",
        "rotate_2d": "0",
        "zoom_x_2d": "0",
        "zoom_y_2d": "0",
        "sampling_mode": "bicubic",
        "infill_mode": "wrap",
        "pixel_size": 1,
        "image_model": "Unlimited Palette",
        "ViTB32": True,
    }
)

#: pytti-core CLIP flags -> open_clip model names (all with the ``openai`` weights).
CLIP_FLAGS: Mapping[str, str] = MappingProxyType(
    {
        "ViTB32": "ViT-B-32",
        "ViTB16": "ViT-B-16",
        "ViTL14": "ViT-L-14",
        "ViTL14_336px": "ViT-L-14-336",
        "RN50": "RN50",
        "RN101": "RN101",
        "RN50x4": "RN50x4",
        "RN50x16": "RN50x16",
        "RN50x64": "RN50x64",
    }
)

#: Settings about pytti's notebook display, output naming or hardware: not part of a scene.
IGNORED = frozenset(
    {
        "defaults",
        "file_namespace",
        "allow_overwrite",
        "display_every",
        "clear_every",
        "display_scale",
        "save_every",
        "backups",
        "show_graphs",
        "show_palette",
        "approximate_vram_usage",
        "use_tensorboard",
        "models_parent_dir",
        "device",
        "gradient_accumulation_steps",
    }
)

#: Settings that change the image but have no equivalent here (yet), with pytti's "off" values.
UNMAPPED: Mapping[str, Any] = MappingProxyType(
    {
        "direct_image_prompts": "",
        "direct_init_weight": "",
        "semantic_init_weight": "",
        "vqgan_model": "sflckr",
        "reset_lr_each_frame": True,
        "cutout_border": 0.25,
        "border_mode": "clamp",
        "field_of_view": 60,
        "near_plane": 1,
        "far_plane": 10000,
        "input_audio": "",
        "input_audio_offset": 0,
        "input_audio_filters": [],
        "lock_camera": True,
        "smoothing_weight": 0.02,
        "random_initial_palette": False,
        "palette_size": 5,
        "palettes": 20,
        "gamma": 1,
        "hdr_weight": 0.01,
        "palette_normalization_weight": 0.2,
        "target_palette": "",
        "lock_palette": False,
        "direct_stabilization_weight": "",
        "semantic_stabilization_weight": "",
        "depth_stabilization_weight": "",
        "edge_stabilization_weight": "",
        "flow_stabilization_weight": "",
        "video_path": "",
        "frame_stride": 1,
        "reencode_each_frame": True,
        "flow_long_term_samples": 1,
        "use_mmc": False,
        "mmc_models": None,
    }
)

_INTERPOLATION = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")
_NUMPY_CALL = re.compile(r"\bnp\.([a-z0-9_]+)\b")
PLACEHOLDER_PROMPT = "a beautiful painting"


class _Converter:
    """Builds the scene dict from a pytti config, collecting warnings."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.config = dict(config)
        self.warnings: list[str] = []
        self.scene: dict[str, Any] = {}

    def get(self, key: str) -> Any:
        value = self.config.get(key, PYTTI_DEFAULTS.get(key))
        if isinstance(value, str):
            match = _INTERPOLATION.match(value.strip())
            if match and match.group(1) in self.config | PYTTI_DEFAULTS:
                return self.get(match.group(1))
            if value.strip().startswith("${"):
                self.warn(f"{key}: Hydra interpolation {value!r} cannot be resolved; using pytti's default")
                return PYTTI_DEFAULTS.get(key)
        return value

    def warn(self, message: str) -> None:
        self.warnings.append(message)

    def number(self, key: str, kind: type = float) -> float | int | None:
        value = self.get(key)
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            return None
        try:
            number = float(value)
        except ValueError:
            self.warn(f"{key}: {value!r} is not a number; using the default")
            return None
        return int(number) if kind is int and number.is_integer() else number

    def convert(self) -> dict[str, Any]:
        """All phases, in the order the output file lists them."""
        self.basics()
        self.perceptors()
        self.animation()
        self.stages()
        self.leftovers()
        return self.scene

    def basics(self) -> None:
        for ours, theirs in (("width", "width"), ("height", "height")):
            value = self.number(theirs, int)
            if value is None or value <= 0:
                self.warn(f"{theirs}: {self.get(theirs)!r} (derived from the init image) is not supported; using 512")
                value = 512
            self.scene[ours] = value
        pixel_size = self.number("pixel_size", int) or 1
        if pixel_size != 1:
            self.warn(
                f"pixel_size: {pixel_size} is not supported; the render is {self.scene['width']}x"
                f"{self.scene['height']} (pytti's parameter grid) instead of being upscaled"
            )
        self.scene["fps"] = self.number("frames_per_second", int) or 12
        seed = self.config.get("seed")
        if isinstance(seed, int) and not isinstance(seed, bool):
            self.scene["seed"] = seed
        else:
            self.warn(f"seed: {seed!r} was random in pytti; using seed 0 (set one to vary the result)")
        self.scene["steps_per_frame"] = self.steps_per_frame()
        self.scene["cutouts"] = self.number("cutouts", int)
        self.scene["cut_pow"] = self.number("cut_pow", int)
        learning_rate = self.number("learning_rate")
        if learning_rate is not None:
            self.scene["learning_rate"] = learning_rate
        init_image = self.get("init_image")
        if init_image:
            self.scene["init_image"] = str(init_image)
            self.warn("init_image: paths are now relative to the scene file's folder; check that it still points there")
        image_model = self.get("image_model")
        if image_model != "Unlimited Palette":
            self.drop("image_model", f"image_model: {image_model!r} is not supported; using unlimited-palette RGB")

    def steps_per_frame(self) -> int:
        value = self.number("steps_per_frame", int)
        if not isinstance(value, int) or value <= 0:
            self.warn(f"steps_per_frame: {self.get('steps_per_frame')!r} is not a positive integer; using 50")
            return 50
        return value

    def perceptors(self) -> None:
        models = [CLIP_FLAGS[flag] for flag in CLIP_FLAGS if self.get(flag) is True]
        if not models:
            self.warn("no CLIP model was selected (ViTB32: false ...); using ViT-B-32")
            models = ["ViT-B-32"]
        self.scene["perceptors"] = [{"model": m, "pretrained": "openai"} for m in models]

    def animation(self) -> None:
        mode = self.get("animation_mode")
        mode = "off" if mode is False or mode is None else str(mode).strip().lower()
        supported = set(get_args(AnimationMode))
        target = {"off": "off", "2d": "2d", "3d": "3d", "video source": "video"}.get(mode)
        if target is None:
            self.warn(f"animation_mode: unknown value {mode!r}; using off")
            target = "off"
        if target not in supported:
            fallback = "2d" if target == "3d" else "off"
            self.warn(f"animation_mode: {mode!r} is not supported yet; converted as '{fallback}'")
            target = fallback
        self.scene["animation"] = target
        if target == "off":
            return
        for key in ("translate_x", "translate_y", "rotate_2d"):
            self.motion(key, key)
        self.zoom()
        if target != "3d":
            for key in ("translate_z_3d", "rotate_3d"):
                if str(self.get(key)).replace(" ", "") not in ("0", "[1,0,0,0]"):
                    self.warn(f"{key}: 3D motion is not supported yet; dropped ({self.get(key)!r})")
        self.scene["sampling_mode"] = self.get("sampling_mode")
        self.scene["infill_mode"] = self.get("infill_mode")
        pre = self.number("pre_animation_steps", int)
        if pre:
            self.warn(f"pre_animation_steps: {pre} steps before the first warp have no equivalent; dropped")

    def motion(self, ours: str, theirs: str) -> None:
        value = self.expression(theirs)
        if value != 0:
            self.scene[ours] = value

    def expression(self, key: str) -> Any:
        value = self.get(key)
        if not isinstance(value, str):
            return value
        text = _NUMPY_CALL.sub(lambda m: m.group(1), value.strip())
        if text != value.strip():
            self.warn(f"{key}: numpy calls rewritten as math functions ({value!r} -> {text!r})")
        try:
            compiled, _ = compile_expression(text, frozenset({"t", "frame"}))
        except ExprError as e:
            self.warn(f"{key}: {value!r} is not a valid expression here ({e.message}); kept as is")
            return text
        return _plain_number(text) if isinstance(compiled, float) else text

    def zoom(self) -> None:
        zx, zy = self.expression("zoom_x_2d"), self.expression("zoom_y_2d")
        if zx == 0 and zy == 0:
            return
        if str(zx) != str(zy):
            self.warn(f"zoom_x_2d/zoom_y_2d: different zooms ({zx!r}, {zy!r}) are not supported; using zoom_x_2d")
        # pytti zooms by zoom_x pixels per frame on the grid: the sampled width shrinks to (w - zoom_x)/w.
        width = self.scene["width"]
        self.scene["zoom"] = f"{width} / ({width} - ({zx}))"

    def stages(self) -> None:
        text = self.get("scenes")
        if not isinstance(text, str) or not text.strip() or text.strip() == "???":
            self.warn(f"scenes: not set; wrote a placeholder scene ({PLACEHOLDER_PROMPT!r}) to edit")
            text = PLACEHOLDER_PROMPT
        stages = [s.strip() for s in text.split("||") if s]
        if any(not s for s in stages):
            self.warn("scenes: a scene with no prompts was dropped")
            stages = [s for s in stages if s] or [PLACEHOLDER_PROMPT]
        frames = self.frames_per_stage()
        transition = self.transition_frames(frames)
        for key in ("scene_prefix", "scene_suffix"):
            if self.get(key):
                self.scene[key] = self.get(key)
        self.scene["scenes"] = [
            {"prompts": s, "frames": frames, **({"transition_frames": transition} if i and transition else {})}
            for i, s in enumerate(stages)
        ]

    def frames_per_stage(self) -> int:
        steps = self.number("steps_per_scene", int) or 100
        per_frame = self.scene["steps_per_frame"]
        exact = steps / per_frame
        frames = max(1, math.floor(exact + 0.5))
        if frames != exact:
            self.warn(
                f"steps_per_scene: {steps} steps is {exact:g} frames of {per_frame} steps; "
                f"each scene now lasts {frames} frames"
            )
        return frames

    def transition_frames(self, frames: int) -> int:
        steps = self.number("interpolation_steps", int) or 0
        if steps <= 0:
            return 0
        exact = steps / self.scene["steps_per_frame"]
        transition = min(frames, max(1, math.floor(exact + 0.5)))
        if transition != exact:
            self.warn(f"interpolation_steps: {steps} steps became transition_frames: {transition}")
        return transition

    def drop(self, key: str, message: str) -> None:
        self.warn(message)
        self.config.pop(key, None)

    def leftovers(self) -> None:
        handled = set(PYTTI_DEFAULTS) | set(CLIP_FLAGS) | IGNORED | {"scenes"}
        for key, value in self.config.items():
            if key in handled:
                continue
            if key in UNMAPPED:
                if value not in (UNMAPPED[key], None, "", "0", 0) and value != UNMAPPED[key]:
                    self.warn(f"{key}: not supported; dropped ({value!r})")
            else:
                self.warn(f"{key}: unknown pytti-core setting; dropped ({value!r})")


def import_pytti_config(path: str | Path) -> tuple[str, list[str]]:
    """Convert a pytti-core config file into scene YAML.

    Args:
        path: a pytti-core Hydra config (``default.yaml`` or a ``conf/*.yaml`` override file).

    Returns:
        ``(yaml_text, warnings)``: the scene file's text and one line per setting that could not be
        carried over exactly.

    Raises:
        SceneError: the file is missing or is not a YAML mapping.
    """
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SceneError(file, None, None, "pytti config not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise SceneError(file, None, None, f"cannot read pytti config: {e}") from None
    return convert_pytti_text(text, name=str(file))


def convert_pytti_text(text: str, *, name: str = "<pytti>") -> tuple[str, list[str]]:
    """:func:`import_pytti_config` for YAML given as text."""
    try:
        config = yaml.safe_load(text)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (None, None)
        raise SceneError(name, line, col, f"YAML syntax error: {e.problem}") from None
    except yaml.YAMLError as e:
        raise SceneError(name, None, None, f"YAML syntax error: {e}") from None
    if config is None:
        config = {}
    if not isinstance(config, dict) or not all(isinstance(k, str) for k in config):
        raise SceneError(name, None, None, "a pytti config must be a mapping of settings")
    converter = _Converter(config)
    scene = converter.convert()
    header = f"# Converted from {Path(name).name} by 'pytti import-pytti'.\n"
    if converter.warnings:
        header += "# Not carried over exactly:\n" + "".join(f"#  - {w}\n" for w in converter.warnings)
    body = yaml.safe_dump(_only_known(scene), sort_keys=False, allow_unicode=True, width=4096)
    return header + body, converter.warnings


def _plain_number(text: str) -> float | int | str:
    """A number literal as a number (``"0"`` -> 0); a constant expression stays readable text."""
    try:
        value = float(text)
    except ValueError:
        return text
    return int(value) if value.is_integer() and "." not in text else value


def _only_known(scene: dict[str, Any]) -> dict[str, Any]:
    """Keys the scene schema knows (the converter only produces those; this keeps it honest)."""
    return {k: v for k, v in scene.items() if k in Scene.model_fields and v is not None}
