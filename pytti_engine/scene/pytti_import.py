"""Convert a pytti-core config (Hydra ``default.yaml`` keys, ``conf/*.yaml``) into a scene file.

pytti-core's clock is steps: every scene runs ``steps_per_scene`` optimizer steps and a frame is
``steps_per_frame`` steps. Here every scene has a number of frames, so a scene becomes
``round(steps_per_scene / steps_per_frame)`` frames and ``interpolation_steps`` becomes
``transition_frames`` the same way. Values the user did not set take pytti-core's defaults (so a
converted file renders what pytti would have), settings that only concern pytti's notebook UI or its
output folder are ignored silently, and every other setting that cannot be carried over is reported
as a warning. The result is YAML text; load it with :func:`~pytti_engine.scene.load_scene_text`.

Only keys that the scene schema of this version has are written (``Scene.model_fields`` is checked),
so the converter degrades to warnings, never to an invalid file, when a feature is missing.
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
from pytti_engine.scene.expr import Expr, ExprError, compile_expression
from pytti_engine.scene.load import yaml_syntax_error
from pytti_engine.scene.schema import AnimationMode, Scene
from pytti_engine.vqgan_files import KNOWN_VQGANS

#: pytti-core's ``default.yaml`` values (``seed`` is random there).
PYTTI_DEFAULTS: Mapping[str, Any] = MappingProxyType(
    {
        "scene_prefix": "",
        "scene_suffix": "",
        "direct_image_prompts": "",
        "init_image": "",
        "direct_init_weight": "",
        "semantic_init_weight": "",
        "image_model": "Unlimited Palette",
        "vqgan_model": "sflckr",
        "animation_mode": "off",
        "width": 512,
        "height": 512,
        "steps_per_scene": 100,
        "steps_per_frame": 50,
        "interpolation_steps": 0,
        "learning_rate": None,
        "reset_lr_each_frame": True,
        "seed": None,
        "cutouts": 40,
        "cut_pow": 2,
        "cutout_border": 0.25,
        "border_mode": "clamp",
        "field_of_view": 60,
        "near_plane": 1,
        "far_plane": 10000,
        "input_audio": "",
        "input_audio_offset": 0,
        "input_audio_filters": [],
        "pre_animation_steps": 50,
        "lock_camera": True,
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
        "smoothing_weight": 0.02,
        "random_initial_palette": False,
        "palette_size": 5,
        "palettes": 20,
        "gamma": 1,
        "hdr_weight": 0.01,
        "palette_normalization_weight": 0.2,
        "show_palette": False,
        "target_palette": "",
        "lock_palette": False,
        "frames_per_second": 12,
        "direct_stabilization_weight": "",
        "semantic_stabilization_weight": "",
        "depth_stabilization_weight": "",
        "edge_stabilization_weight": "",
        "flow_stabilization_weight": "",
        "video_path": "",
        "frame_stride": 1,
        "reencode_each_frame": True,
        "flow_long_term_samples": 1,
        "ViTB32": True,
        "use_mmc": False,
        "mmc_models": None,
        "use_tensorboard": False,
        "gradient_accumulation_steps": 1,
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

#: Settings with the same name and meaning here: written when pytti's value differs from our default.
SAME_NAME = (
    "smoothing_weight",
    "reset_lr_each_frame",
    "gradient_accumulation_steps",
    "cutout_border",
    "border_mode",
    "input_audio_offset",
)
PALETTE_SETTINGS = (
    "palette_size",
    "palettes",
    "gamma",
    "hdr_weight",
    "palette_normalization_weight",
    "random_initial_palette",
    "lock_palette",
)
RENAMED: Mapping[str, str] = MappingProxyType({"use_tensorboard": "tensorboard"})

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
        "models_parent_dir",
        "device",
    }
)

#: Settings that only matter in one animation mode (pytti ignores them in the others, and so do we).
MODE_SETTINGS: Mapping[str, str] = MappingProxyType(
    {
        "translate_x": "2d 3d",
        "translate_y": "2d 3d",
        "rotate_2d": "2d",
        "zoom_x_2d": "2d",
        "zoom_y_2d": "2d",
        "translate_z_3d": "3d",
        "rotate_3d": "3d",
        "field_of_view": "3d",
        "near_plane": "3d",
        "far_plane": "3d",
        "lock_camera": "3d",
        "sampling_mode": "2d 3d",
        "infill_mode": "2d 3d",
        "pre_animation_steps": "2d 3d video",
        "video_path": "video",
        "frame_stride": "video",
        "reencode_each_frame": "video",
        "flow_long_term_samples": "video",
        "direct_stabilization_weight": "2d 3d video",
        "semantic_stabilization_weight": "2d 3d video",
        "depth_stabilization_weight": "2d 3d video",
        "edge_stabilization_weight": "2d 3d video",
        "flow_stabilization_weight": "2d 3d video",
    }
)

_INTERPOLATION = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")
_NUMPY_CALL = re.compile(r"\bnp\.([a-z0-9_]+)\b")
_URL_SAFE_COLON = re.compile(r":(?!//)")
_DEPTH_STATS = re.compile(r"(?<![\w.])(r|R|mu)(?![\w(])")
TYPICAL_DEPTH_M = 3.0
"""PyTTI's AdaBins depth of a typical picture (metres): where a flat import puts every pixel."""
ADABINS_RANGE_M = (1e-3, 10.0)
"""PyTTI maps AdaBins depth in this range (metres) linearly onto ``[near_plane, far_plane]``."""
PLACEHOLDER_PROMPT = "a beautiful painting"


def _plain_number(text: str) -> float | int | str:
    """A number literal as a number (``"0"`` -> 0); anything else stays text."""
    try:
        value = float(text)
    except ValueError:
        return text
    return int(value) if value.is_integer() and "." not in text and "e" not in text.lower() else value


def _default(key: str) -> Any:
    field = Scene.model_fields.get(key)
    return None if field is None or field.is_required() else field.default


class _Converter:
    """Builds the scene dict from a pytti config, collecting warnings; one method per group of settings."""

    def __init__(self, config: Mapping[str, Any], depth_model: str | None = None) -> None:
        self.config = dict(config)
        self.depth_model = depth_model
        self.warnings: list[str] = []
        self.scene: dict[str, Any] = {}
        self.used: set[str] = {"scenes"} | IGNORED
        self.mode = "off"
        self.bands: frozenset[str] = frozenset()

    # -- reading the config --------------------------------------------------------------------------------

    def get(self, key: str, _seen: frozenset[str] = frozenset()) -> Any:
        """The effective pytti value (the config's, else pytti's default), resolving ``${other_key}``."""
        self.used.add(key)
        value = self.config.get(key, PYTTI_DEFAULTS.get(key))
        if isinstance(value, str):
            match = _INTERPOLATION.match(value.strip())
            target = match.group(1) if match else None
            known = target is not None and (target in self.config or target in PYTTI_DEFAULTS)
            if target is not None and target not in _seen and known:
                return self.get(target, _seen | {key})
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
        if not math.isfinite(number):
            self.warn(f"{key}: {value!r} is not a finite number; using the default")
            return None
        return int(number) if kind is int and number.is_integer() else number

    def expression(self, key: str, depth_stats: str | None = None) -> Any:
        """An expression setting, with ``np.f(`` rewritten to ``f(``; numbers stay numbers.

        ``depth_stats`` (3D keys): the number that replaces PyTTI's depth statistics ``r``, ``R``, ``mu``.
        """
        value = self.get(key)
        if not isinstance(value, str):
            return value
        text = _NUMPY_CALL.sub(lambda m: m.group(1), value.strip())
        if text != value.strip():
            self.warn(f"{key}: numpy calls rewritten as math functions ({value!r} -> {text!r})")
        if depth_stats is not None and _DEPTH_STATS.search(text):
            before, text = text, _DEPTH_STATS.sub(depth_stats, text)
            self.warn(
                f"{key}: PyTTI's depth statistics r, R, mu became the flat depth {depth_stats} "
                f"({before!r} -> {text!r}); with a depth model they change every frame in PyTTI"
            )
        try:
            compiled, _ = compile_expression(text, frozenset({"t", "frame"}) | self.bands)
        except ExprError as e:
            self.warn(f"{key}: {value!r} is not a valid expression here ({e.message}); kept as is")
            return text
        return _plain_number(text) if isinstance(compiled, float) else text

    # -- writing the scene ---------------------------------------------------------------------------------

    def put(self, key: str, value: Any, source: str) -> None:
        """Set a scene key if this version of the schema has it; otherwise warn that it was dropped."""
        if key in Scene.model_fields:
            self.scene[key] = value
        else:
            self.warn(f"{source}: not supported by this version; dropped ({value!r})")

    def put_if_not_default(self, key: str, value: Any, source: str) -> None:
        default = _default(key)
        if isinstance(default, Expr) and default.is_constant and isinstance(value, int | float):
            default = default.value
        if value is not None and value != default:
            self.put(key, value, source)

    def convert(self) -> dict[str, Any]:
        """All groups, in the order the output file lists them."""
        self.size_and_clock()
        self.perceptors()
        self.image_model()
        self.init_and_direct_prompts()
        self.optimizer_and_cutouts()
        self.audio()
        self.animation()
        self.stages()
        self.leftovers()
        return self.scene

    def size_and_clock(self) -> None:
        pixel_size = self.number("pixel_size", int) or 1
        scale = pixel_size if "pixel_size" in Scene.model_fields else 1
        for key in ("width", "height"):
            value = self.number(key, int)
            if value is None or value <= 0:
                self.warn(
                    f"{key}: {self.get(key)!r} (derived from the init image) is not supported; using 512"
                )
                value = 512
            self.scene[key] = value * scale
        if pixel_size != 1:
            self.put("pixel_size", pixel_size, "pixel_size")
        self.scene["fps"] = self.number("frames_per_second", int) or 12
        seed = self.config.get("seed")
        self.used.add("seed")
        if isinstance(seed, int) and not isinstance(seed, bool):
            self.scene["seed"] = seed
        else:
            shown = "not set" if seed is None else repr(seed)
            self.warn(f"seed: {shown} (random in pytti); using seed 0 (set one to vary the result)")
        value = self.number("steps_per_frame", int)
        if not isinstance(value, int) or value <= 0:
            self.warn(f"steps_per_frame: {self.get('steps_per_frame')!r} is not a positive integer; using 50")
            value = 50
        self.scene["steps_per_frame"] = value

    def perceptors(self) -> None:
        models = [CLIP_FLAGS[flag] for flag in CLIP_FLAGS if self.get(flag) is True]
        if not models:
            self.warn("no CLIP model was selected (ViTB32: false ...); using ViT-B-32")
            models = ["ViT-B-32"]
        self.scene["perceptors"] = [{"model": m, "pretrained": "openai"} for m in models]
        if self.get("use_mmc"):
            self.warn(
                f"use_mmc / mmc_models: not supported; using the CLIP flags instead ({self.get('mmc_models')!r})"
            )

    def image_model(self) -> None:
        model = str(self.get("image_model"))
        ours = {
            "Unlimited Palette": "unlimited_palette",
            "Limited Palette": "limited_palette",
            "VQGAN": "vqgan",
        }.get(model)
        if ours is None or "image_model" not in Scene.model_fields:
            if model != "Unlimited Palette":
                self.warn(f"image_model: {model!r} is not supported; using unlimited-palette RGB")
            self.get("vqgan_model")
            return
        self.put_if_not_default("image_model", ours, "image_model")
        if ours == "vqgan":
            self.vqgan()
            return
        self.get("vqgan_model")  # pytti ignores it for the other image models, and so do we
        if ours != "limited_palette":
            return
        for key in PALETTE_SETTINGS:
            self.put_if_not_default(key, self.get(key), key)
        target = self.get("target_palette")
        if target:
            self.put("target_palette", str(target), "target_palette")
            self.warn("target_palette: paths are now relative to the scene file's folder")

    def vqgan(self) -> None:
        """``vqgan_model``, PyTTI's VQGAN resolution (pixel_size multiplies it), and ``models_parent_dir``."""
        name = str(self.get("vqgan_model"))
        known = KNOWN_VQGANS.get(name)
        if known is None:
            self.warn(f"vqgan_model: {name!r} is not one of {', '.join(KNOWN_VQGANS)}; using imagenet")
            known = KNOWN_VQGANS["imagenet"]
        self.put("vqgan_model", known.name, "vqgan_model")
        self.scene.pop("pixel_size", None)  # width/height already carry it: PyTTI's VQGAN renders that large
        for key in ("width", "height"):
            value = self.scene[key]
            rounded = max(known.factor, value // known.factor * known.factor)
            if rounded != value:
                self.warn(
                    f"{key}: {value} rounded to {rounded} (VQGAN {known.name} works in {known.factor}-pixel "
                    "cells; PyTTI rounds down too)"
                )
                self.scene[key] = rounded
        if "learning_rate" not in self.scene:  # pytti's null: the model's own rate
            self.scene["learning_rate"] = 0.15 if known.gumbel else 0.1
        parent = self.config.get("models_parent_dir")
        if isinstance(parent, str) and parent.strip() and not parent.strip().startswith("${user_cache"):
            self.put("models_dir", parent.strip(), "models_parent_dir")
            self.warn(
                "models_parent_dir: now models_dir, relative to the scene file's folder "
                "(the VQGAN files are looked for in its vqgan/ subfolder)"
            )

    def init_and_direct_prompts(self) -> None:
        init_image = self.get("init_image")
        if init_image:
            self.scene["init_image"] = str(init_image)
            self.warn(
                "init_image: paths are now relative to the scene file's folder; check that it still points there"
            )
        for key in ("direct_init_weight", "semantic_init_weight"):
            weight = self.loss_weight(key)
            if weight is not None:
                if not init_image:
                    self.warn(f"{key}: there is no init_image; dropped")
                else:
                    self.put_if_not_default(key, weight, key)
        prompts = self.direct_image_prompts()
        if prompts:
            self.put("direct_image_prompts", prompts, "direct_image_prompts")

    def loss_weight(self, key: str) -> float | None:
        """A pytti loss-weight string (``weight[_mask][:stop]``, ``""``/``"0"`` = off) as a number."""
        raw = self.get(key)
        text = "" if raw is None else str(raw).strip()
        if text in ("", "0"):
            return None
        weight_part, _, stop = text.partition(":")
        weight, _, mask = weight_part.partition("_")
        if mask or stop:
            self.warn(f"{key}: the mask/stop in {text!r} is not supported; only the weight is kept")
        value = _plain_number(weight.strip())
        if isinstance(value, str):
            self.warn(f"{key}: {text!r} is not a number (expressions are not supported here); dropped")
            return None
        return float(value)

    def direct_image_prompts(self) -> list[dict[str, Any]]:
        text = str(self.get("direct_image_prompts") or "").strip()
        prompts: list[dict[str, Any]] = []
        for item in filter(None, (p.strip() for p in text.split("|"))):
            parts = _URL_SAFE_COLON.split(item, maxsplit=2)
            path, weight_part, stop = (parts + ["", ""])[:3]
            weight, _, mask = weight_part.partition("_")
            entry: dict[str, Any] = {"image": path.strip(), "weight": _plain_number(weight.strip() or "1")}
            if stop.strip():
                entry["stop"] = _plain_number(stop.strip())
            if mask.strip():
                self.warn(f"direct_image_prompts: the mask of {item!r} is not supported; dropped")
            prompts.append(entry)
        if prompts:
            self.warn("direct_image_prompts: paths are now relative to the scene file's folder")
        return prompts

    def optimizer_and_cutouts(self) -> None:
        self.scene["cutouts"] = self.number("cutouts", int)
        self.scene["cut_pow"] = self.number("cut_pow", int)
        learning_rate = self.number("learning_rate")
        if learning_rate is not None:
            self.scene["learning_rate"] = learning_rate
        for key in SAME_NAME:
            if key != "input_audio_offset":
                self.put_if_not_default(key, self.get(key), key)
        for theirs, ours in RENAMED.items():
            self.put_if_not_default(ours, self.get(theirs), theirs)

    def audio(self) -> None:
        path = self.get("input_audio")
        if not path:
            self.get("input_audio_filters")
            self.get("input_audio_offset")
            return
        self.put("input_audio", str(path), "input_audio")
        self.warn("input_audio: paths are now relative to the scene file's folder")
        self.put_if_not_default("input_audio_offset", self.number("input_audio_offset"), "input_audio_offset")
        filters = self.get("input_audio_filters") or []
        if isinstance(filters, dict):  # the structured schema allowed a single filter
            filters = [filters]
        converted = [
            {
                "name": f.get("variable_name"),
                "f_center": f.get("f_center"),
                "f_width": f.get("f_width"),
                "order": f.get("order", 5),
            }
            for f in filters
            if isinstance(f, dict)
        ]
        if converted:
            self.put("input_audio_filters", converted, "input_audio_filters")
            names = [str(f["name"]) for f in converted if isinstance(f["name"], str)]
            self.bands = frozenset(names) | frozenset(f"{n}_prev" for n in names)

    def animation(self) -> None:
        raw = self.get("animation_mode")
        mode = "off" if raw is False or raw is None else str(raw).strip().lower()
        supported = set(get_args(AnimationMode))
        target = {"off": "off", "2d": "2d", "3d": "3d", "video source": "video"}.get(mode)
        if target is None:
            self.warn(f"animation_mode: unknown value {mode!r}; using off")
            target = "off"
        if target not in supported:
            fallback = "2d" if target == "3d" and "2d" in supported else "off"
            self.warn(f"animation_mode: {mode!r} is not supported; converted as '{fallback}'")
            target = fallback
        self.mode = target
        self.scene["animation"] = target
        if target == "2d":
            for key in ("translate_x", "translate_y"):
                self.put_if_not_default(key, self.expression(key), key)
        if target in ("2d", "3d"):
            self.scene["sampling_mode"] = self.get("sampling_mode")
            self.scene["infill_mode"] = self.get("infill_mode")
        if target == "2d":
            self.put_if_not_default("rotate_2d", self.expression("rotate_2d"), "rotate_2d")
            self.zoom()
        elif target == "3d":
            self.camera_3d()
        elif target == "video":
            self.video_source()
        if target != "off":
            self.stabilization()
            pre = self.number("pre_animation_steps", int)
            if isinstance(pre, int) and pre > 0:
                self.put("pre_animation_steps", pre, "pre_animation_steps")
            elif pre:
                self.warn(f"pre_animation_steps: {pre!r} is not a whole number >= 0; dropped")

    def zoom(self) -> None:
        """pytti zooms by ``zoom_x_2d`` pixels per frame: the sampled width shrinks to (w - zoom_x) / w."""
        zx, zy = self.expression("zoom_x_2d"), self.expression("zoom_y_2d")
        if zx == 0 and zy == 0:
            return
        grid = (
            self.scene["width"] // self.scene.get("pixel_size", 1),
            self.scene["height"] // self.scene.get("pixel_size", 1),
        )
        if "zoom_x" in Scene.model_fields and "zoom_y" in Scene.model_fields:
            self.scene["zoom_x"] = f"{grid[0]} / ({grid[0]} - ({zx}))"
            self.scene["zoom_y"] = f"{grid[1]} / ({grid[1]} - ({zy}))"
            return
        if str(zx) != str(zy):
            self.warn(
                f"zoom_x_2d/zoom_y_2d: different zooms ({zx!r}, {zy!r}) are not supported; using zoom_x_2d"
            )
        self.scene["zoom"] = f"{grid[0]} / ({grid[0]} - ({zx}))"

    def camera_3d(self) -> None:
        """PyTTI's 3D camera as ``camera_model: pytti`` (its own reprojection formula).

        Its y-down frame turns pitch and roll the other way: ``rotate_3d: [w, x, y, z]`` becomes
        ``[w, -x, y, -z]``. Depth units: PyTTI maps AdaBins metres onto ``[near_plane, far_plane]``
        (about 1000 units per metre with its defaults), so a flat import puts every pixel at the depth of
        a typical AdaBins picture (``TYPICAL_DEPTH_M``), and a given depth model spans PyTTI's 1 m .. 10 m.
        """
        near = self.number("near_plane") or PYTTI_DEFAULTS["near_plane"]
        far = self.number("far_plane") or PYTTI_DEFAULTS["far_plane"]
        if not 0 < near < far:
            self.warn(f"near_plane/far_plane: {near!r}/{far!r} are not 0 < near < far; using PyTTI's 1/10000")
            near, far = PYTTI_DEFAULTS["near_plane"], PYTTI_DEFAULTS["far_plane"]
        typical = _pytti_depth_units(TYPICAL_DEPTH_M, near, far)
        stats = f"{typical:g}"
        for key in ("translate_x", "translate_y"):
            self.put_if_not_default(key, self.expression(key, stats), key)
        self.put_if_not_default("translate_z", self.expression("translate_z_3d", stats), "translate_z_3d")
        rotation = self.get("rotate_3d")
        if isinstance(rotation, list | tuple):
            rotation = "[" + ", ".join(str(v) for v in rotation) + "]"
        text = _NUMPY_CALL.sub(lambda m: m.group(1), str(rotation).strip())
        if _DEPTH_STATS.search(text):
            self.warn(f"rotate_3d: PyTTI's depth statistics r, R, mu became the flat depth {stats}")
            text = _DEPTH_STATS.sub(stats, text)
        if text.replace(" ", "") not in ("[1,0,0,0]", "[1.0,0,0,0]"):
            converted = _y_up_quaternion(text)
            if converted is None:
                self.warn(
                    f"rotate_3d: {text!r} is not a list [w, x, y, z]; kept as is (PyTTI's frame is y-down: "
                    "negate x and z to turn the same way here)"
                )
                converted = text
            self.put("rotate_3d", converted, "rotate_3d")
        self.put("camera_model", "pytti", "camera_model")
        self.put_if_not_default("field_of_view", self.get("field_of_view"), "field_of_view")
        lock = bool(self.get("lock_camera"))
        if self.depth_model is not None:
            self.put("depth_model", self.depth_model, "depth_model")
            self.put("near_plane", round(_pytti_depth_units(1.0, near, far), 3), "near_plane")
            self.put("far_plane", round(_pytti_depth_units(ADABINS_RANGE_M[1], near, far), 3), "far_plane")
            self.put_if_not_default("lock_camera", lock, "lock_camera")
            self.warn(
                "depth_model: pytti used AdaBins (metres); the depth model's relative depth is mapped to "
                f"PyTTI's 1 m .. 10 m ({self.scene.get('near_plane')} .. {self.scene.get('far_plane')} "
                "units) on the first frame and kept, so depths differ from AdaBins' per picture"
            )
            return
        self.put("depth_model", "flat", "depth_model")
        self.put("flat_depth", round(typical, 3), "flat_depth")
        self.warn(
            f"depth_model: pytti used AdaBins; converted as 'flat' at {typical:g} units (the depth of a "
            f"typical {TYPICAL_DEPTH_M:g} m picture in PyTTI), so there is no parallax: give "
            "--depth-model DIR (a Depth-Anything-V2 folder) for depth"
        )
        self.put("lock_camera", False, "lock_camera")
        if lock:
            self.warn(
                "lock_camera: PyTTI subtracts the mean motion of its AdaBins depth, which keeps the "
                "parallax; on flat depth that would remove translate_x/y entirely and nearly all of a "
                "pan or tilt, so the import sets lock_camera: false (the picture drifts with the camera). "
                "With --depth-model it stays true"
            )

    def video_source(self) -> None:
        path = self.get("video_path")
        if path:
            self.put("video_path", str(path), "video_path")
            self.warn(
                "video_path: paths are now relative to the scene file's folder; check that it still points there"
            )
        self.put_if_not_default("frame_stride", self.number("frame_stride", int) or 1, "frame_stride")
        self.put_if_not_default(
            "reencode_each_frame", bool(self.get("reencode_each_frame")), "reencode_each_frame"
        )
        samples = self.number("flow_long_term_samples", int)
        if samples and samples != 1:
            self.warn(f"flow_long_term_samples: {samples} is not supported; dropped")

    def stabilization(self) -> None:
        weights: dict[str, Any] = {}
        for kind in ("direct", "semantic", "edge", "depth", "flow"):
            key = f"{kind}_stabilization_weight"
            raw = self.get(key)
            if raw is None or str(raw).strip() in ("", "0"):
                continue
            if kind == "flow" and self.mode == "2d":
                self.warn(f"{key}: pytti has no flow loss in 2D mode (it ignores the weight); dropped")
                continue
            weight_part, _, stop = str(raw).partition(":")
            weight, _, mask = weight_part.partition("_")
            weights[kind] = _plain_number(weight.strip())
            if mask.strip():
                weights[f"{kind}_mask"] = mask.strip().strip("[]")
                self.warn(f"{key}: mask paths are now relative to the scene file's folder")
            if stop.strip():
                self.warn(f"{key}: the stop ({stop.strip()!r}) is not supported; dropped")
        if weights:
            self.put("stabilization", weights, "stabilization weights")

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
            {
                "prompts": s,
                "frames": frames,
                **({"transition_frames": transition} if i and transition else {}),
            }
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

    def leftovers(self) -> None:
        """Report settings nobody read: mode settings of other modes stay silent, as pytti ignores them."""
        for key, value in self.config.items():
            if key in self.used or key in CLIP_FLAGS:
                continue
            modes = MODE_SETTINGS.get(key)
            if modes is not None and self.mode not in modes.split():
                continue
            if key not in PYTTI_DEFAULTS:
                self.warn(f"{key}: unknown pytti-core setting; dropped ({value!r})")
            elif value not in (PYTTI_DEFAULTS[key], None, "", "0", 0):
                self.warn(f"{key}: not supported; dropped ({value!r})")


def _pytti_depth_units(metres: float, near: float, far: float) -> float:
    """PyTTI's depth for AdaBins ``metres``: ``interp(m, (1e-3, 10), (near_plane, far_plane))``."""
    lo, hi = ADABINS_RANGE_M
    return near + (min(max(metres, lo), hi) - lo) * (far - near) / (hi - lo)


def _split_top_level(text: str) -> list[str] | None:
    """``"[a, b(c, d), e]"`` -> ``["a", "b(c, d)", "e"]``; ``None`` when ``text`` is not one list."""
    text = text.strip()
    if not (text.startswith("[") and text.endswith("]")):
        return None
    parts, depth, begin = [], 0, 1
    for i, ch in enumerate(text[1:-1], start=1):
        depth += ch in "([{"
        depth -= ch in ")]}"
        if depth < 0:
            return None
        if ch == "," and depth == 0:
            parts.append(text[begin:i].strip())
            begin = i + 1
    parts.append(text[begin:-1].strip())
    return parts if depth == 0 and all(parts) else None


def _negated(term: str) -> str:
    """``-term`` written simply (``0`` stays ``0``, ``-x`` and ``-f(x)*y`` lose their sign)."""
    value = _plain_number(term)
    if not isinstance(value, str):
        return "0" if value == 0 else f"{-value!r}"
    if term.startswith("-") and _only_products(term[1:].strip()):
        return term[1:].strip()  # -(-a*b) == a*b: unary minus binds tighter than * and /
    return f"-({term})"


def _only_products(text: str) -> bool:
    """Whether ``text`` has no operator but ``*``, ``/`` and ``**`` outside parentheses."""
    depth = 0
    for i, ch in enumerate(text):
        depth += ch in "([{"
        depth -= ch in ")]}"
        if depth == 0 and (ch in "+-%<>=!&|^~" or text.startswith("//", i) or ch.isspace()):
            return False
    return bool(text)


def _y_up_quaternion(text: str) -> str | None:
    """PyTTI's ``[w, x, y, z]`` (y-down frame) as the same rotation here (y up): ``[w, -x, y, -z]``."""
    parts = _split_top_level(text)
    if parts is None or len(parts) != 4:
        return None
    w, x, y, z = parts
    return f"[{w}, {_negated(x)}, {y}, {_negated(z)}]"


def import_pytti_config(path: str | Path, *, depth_model: str | None = None) -> tuple[str, list[str]]:
    """Convert a pytti-core config file into scene YAML.

    Args:
        path: a pytti-core Hydra config (``default.yaml`` or a ``conf/*.yaml`` override file).
        depth_model: 3D: the depth model to write (a folder or hub id) instead of flat depth.

    Returns:
        ``(yaml_text, warnings)``: the scene file's text and one line per setting that could not be
        carried over exactly (the same lines are comments at the top of the text).

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
    return convert_pytti_text(text, name=str(file), depth_model=depth_model)


def convert_pytti_text(
    text: str, *, name: str = "<pytti>", depth_model: str | None = None
) -> tuple[str, list[str]]:
    """:func:`import_pytti_config` for YAML given as text."""
    try:
        config = yaml.safe_load(text)
    except yaml.MarkedYAMLError as e:
        raise yaml_syntax_error(e, name) from None
    except (yaml.YAMLError, RecursionError) as e:
        raise SceneError(name, None, None, f"YAML syntax error: {e}") from None
    if config is None:
        config = {}
    if not isinstance(config, dict) or not all(isinstance(k, str) for k in config):
        raise SceneError(name, None, None, "a pytti config must be a mapping of settings")
    converter = _Converter(config, depth_model)
    scene = converter.convert()
    header = f"# Converted from {Path(name).name} by 'pytti import-pytti'.\n"
    if converter.warnings:
        header += "# Not carried over exactly:\n" + "".join(f"#  - {w}\n" for w in converter.warnings)
    known = {k: v for k, v in scene.items() if k in Scene.model_fields and v is not None}
    body = yaml.safe_dump(known, sort_keys=False, allow_unicode=True, width=4096)
    return header + body, converter.warnings
