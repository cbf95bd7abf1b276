"""CLIP perceptors: open_clip models loaded through open_clip's own factory, wrapped for guidance.

A :class:`Perceptor` is a frozen CLIP model plus what the renderer needs around it: the visual
tower's input size, the normalization mean/std, and two encoders that return L2-normalized
embeddings. :func:`load_perceptor` builds one from any of three weight sources, always through
``open_clip.create_model`` (the real config lookup and ``load_checkpoint`` path):

- a built-in architecture and a pretrained tag, e.g. ``("ViT-B-32", "openai")``: open_clip's
  pretrained registry and the Hugging Face cache;
- a built-in architecture and a weights file, e.g. ``("ViT-B-32", "/models/vitb32.safetensors")``
  (``.safetensors``, ``.pt``, ``.pth`` or ``.bin``);
- a folder in open_clip's ``local-dir:`` layout (``open_clip_config.json`` + weights), e.g.
  ``"local-dir:/models/my-clip"``. :func:`write_stand_in` writes a tiny random-weight one.

Missing tag weights fail fast. open_clip would spend ~46 s on hub retries when ``HF_HUB_OFFLINE`` is
unset and there is no network, so before calling it we look the files up in the Hugging Face cache
and, when they are absent, probe the hub endpoint with a short connect timeout; only a reachable hub
is asked for a download. Otherwise :class:`~pytti_engine.errors.ModelLoadError` says which model is
missing and how to provide it.

QuickGELU: open_clip builds ``ViT-B-32`` with exact GELU although the ``openai`` weights were
trained with QuickGELU, and only warns. The activation is chosen (:func:`choose_activation`), in order:
the perceptor entry's ``quick_gelu: true|false``; a tag's entry in open_clip's registry; a
``-quickgelu`` architecture; a ``local-dir:`` folder's config when it says ``quick_gelu``; weights
recognised as a release: a path inside the Hugging Face cache folder of a registry tag's repository
gets that tag's activation, OpenAI's TorchScript archive or a state dict in OpenAI's layout (with its
``input_resolution``, ``context_length`` and ``vocab_size`` entries) gets QuickGELU; anything else
gets the architecture's own activation, with a warning (:attr:`PerceptorCheck.warning`) that says how
to choose.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import json
import logging
import os
import socket
import threading
import urllib.parse
import urllib.request
import warnings
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

import open_clip
import torch
import torch.nn.functional as F
from huggingface_hub import constants as hf_constants
from huggingface_hub import try_to_load_from_cache
from open_clip.constants import HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME
from safetensors.torch import save_file

from pytti_engine.errors import ModelLoadError, ShapeError
from pytti_engine.hashes import Hasher, file_sha256, files_sha256

logger = logging.getLogger(__name__)

LOCAL_DIR_PREFIX = "local-dir:"
STAND_IN_MODEL = "pytti-stand-in"
"""Architecture name of the stand-in perceptor (package data ``model_configs/pytti-stand-in.json``)."""
PROBE_TIMEOUT_S = 0.5
"""How long the hub reachability probe (DNS + TCP connect) may take before the hub counts as offline."""

_WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin", ".ckpt")
_LOCAL_DIR_WEIGHT_GLOBS = ("*.safetensors", "*.bin", "*.pth")  # what open_clip looks for in a local dir
_LOCAL_DIR_CONFIG = "open_clip_config.json"
_STAND_IN_WEIGHTS = "open_clip_model.safetensors"
_HOW_TO_PROVIDE = (
    "To provide them: on a machine with internet access run `pytti models fetch {spec}` (it downloads "
    "into the Hugging Face cache, HF_HOME) and copy that cache here; or point `pretrained:` at a weights "
    "file (`pretrained: /path/to/file.safetensors`, with `quick_gelu: true` for OpenAI's weights); or use an open_clip folder (`model: local-dir:/path`). "
    "For an offline smoke run without trained weights: `pytti models stand-in DIR`, then "
    "`model: local-dir:DIR`."
)


@dataclass(frozen=True, eq=False)
class Perceptor:
    """A frozen CLIP model ready for guidance.

    Args:
        name: what was asked for: ``"ViT-B-32:openai"``, ``"ViT-B-32:/abs/file.safetensors"`` or
            ``"local-dir:/abs/path"``.
        identity: a stable id for cache keys and manifests: model name + pretrained tag, or the model
            name + sha256 of the local weights (and config) files. It does not depend on paths.
        model: the open_clip model, in eval mode, ``requires_grad_(False)``, on its device.
        input_size: side of the square image the visual tower takes (e.g. 224).
        mean: per-channel normalization mean from the model's preprocess config.
        std: per-channel normalization std from the model's preprocess config.
        tokenizer: open_clip's tokenizer for the model (``texts -> (N, context_length)`` token ids).
        quick_gelu: whether the model was built with QuickGELU (else exact GELU).
        activation: the activation and why it was chosen (``"QuickGELU (quick_gelu: true in the scene)"``).
    """

    name: str
    identity: str
    model: torch.nn.Module
    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    tokenizer: Callable[..., torch.Tensor] = field(repr=False)
    quick_gelu: bool = False
    activation: str = ""

    @functools.cached_property
    def _normalization(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(1, 3, 1, 1) ``mean`` and ``std`` as float32 tensors on the model's device, made once (a tensor
        made from Python numbers on a GPU is a copy from host memory, which waits for the device)."""
        device = self.device
        return (
            torch.tensor(self.mean, dtype=torch.float32).view(1, 3, 1, 1).to(device),
            torch.tensor(self.std, dtype=torch.float32).view(1, 3, 1, 1).to(device),
        )

    @property
    def device(self) -> torch.device:
        """The device the model's parameters live on."""
        return next(self.model.parameters()).device

    def encode_text(self, texts: Sequence[str]) -> torch.Tensor:
        """Embed texts (no gradient).

        Args:
            texts: one or more prompt texts.

        Returns:
            (N, D) L2-normalized embeddings on the model's device.
        """
        batch = [texts] if isinstance(texts, str) else list(texts)
        if not batch:
            raise ValueError("encode_text needs at least one text")
        tokens = self.tokenizer(batch).to(self.device)
        with torch.no_grad():
            return F.normalize(self.model.encode_text(tokens), dim=-1)  # type: ignore[operator]

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """Embed images; differentiable with respect to ``images``.

        Args:
            images: (B, 3, S, S) RGB in [0, 1] with ``S == input_size``. The mean/std normalization is
                applied here.

        Returns:
            (B, D) L2-normalized embeddings.
        """
        size = self.input_size
        if images.ndim != 4 or images.shape[1] != 3 or tuple(images.shape[-2:]) != (size, size):
            raise ShapeError(f"encode_image expected (B, 3, {size}, {size}), got {tuple(images.shape)}")
        dtype = next(self.model.parameters()).dtype
        mean, std = (t.to(images) for t in self._normalization)
        normalized = ((images - mean) / std).to(dtype)
        return F.normalize(self.model.encode_image(normalized), dim=-1)  # type: ignore[operator]


@dataclass(frozen=True)
class _BuildPlan:
    """How to call ``open_clip.create_model`` for one perceptor request."""

    open_clip_name: str  # the name handed to open_clip (may carry the ``local-dir:`` schema)
    pretrained: str | None  # a tag or a file path; None for local-dir
    name: str  # Perceptor.name
    identity: str  # Perceptor.identity, or its prefix when ``hashed`` names files to hash
    force_quick_gelu: bool = False
    model_cfg: dict[str, Any] = field(default_factory=dict)  # the architecture (sizes, activation)
    hashed: tuple[Path, ...] = ()  # the weight (and config) files whose sha256 completes the identity
    activation: str = ""  # why the activation was chosen, when not just the architecture's config
    warning: str | None = None  # the activation is a guess: say what was chosen and how to choose
    openai_layout: bool = False  # the weights file is in OpenAI's layout (TorchScript or its state dict)
    force_preprocess_cfg: dict[str, Any] = field(default_factory=dict)
    how_to_fix: str = ""  # appended to a load failure's message


def load_perceptor(
    model: str,
    pretrained: str | None = None,
    *,
    device: torch.device | str = "cpu",
    quick_gelu: bool | None = None,
) -> Perceptor:
    """Load an open_clip model as a frozen :class:`Perceptor`.

    Args:
        model: an open_clip architecture (``"ViT-B-32"``), ``"MODEL:TAG"`` (same as passing the tag as
            ``pretrained``), or ``"local-dir:/path"`` (open_clip's folder layout; ``pretrained`` must
            then be None).
        pretrained: a pretrained tag of ``model`` (``"openai"``) or a path to a weights file.
            Required for built-in architectures: a perceptor is never silently random.
        device: where to put the model.
        quick_gelu: build with QuickGELU (``True``) or exact GELU (``False``); ``None`` chooses as
            :func:`choose_activation` does (an unrecognised local file gets the architecture's own,
            and the choice is logged as a warning).

    Returns:
        The loaded perceptor.

    Raises:
        ModelLoadError: unknown model or tag, missing file or folder, weights that are neither cached
            nor downloadable, or weights that do not fit the architecture.

    Example:
        >>> p = load_perceptor("local-dir:" + str(write_stand_in(tmp_path)))  # doctest: +SKIP
        >>> p.encode_text(["a lighthouse"]).shape  # doctest: +SKIP
        torch.Size([1, 32])
    """
    plan = _plan(model, pretrained, quick_gelu)
    if plan.warning:
        logger.warning("%s", plan.warning)
    net = _create(plan, device)
    net.eval().requires_grad_(False)
    cfg = _preprocess_cfg(net)
    tokenizer = _tokenizer(plan)
    size = cfg["size"]
    height, width = (size, size) if isinstance(size, int) else size
    if height != width:
        raise ModelLoadError(f"{plan.name}: non-square input size {height}x{width} is not supported")
    return Perceptor(
        name=plan.name,
        identity=_identity(plan),
        quick_gelu=_uses_quick_gelu(plan),
        activation=_activation_reason(plan),
        model=net,
        input_size=int(height),
        mean=_triple(cfg["mean"]),
        std=_triple(cfg["std"]),
        tokenizer=tokenizer,
    )


@dataclass(frozen=True)
class PerceptorCheck:
    """What a perceptor entry will load, worked out without loading (or hashing) any weights.

    Args:
        name: as :attr:`Perceptor.name`.
        input_size: side of the square image the visual tower takes (e.g. 224).
        quick_gelu: whether the model is built with QuickGELU (else exact GELU).
        activation: why that activation, for ``validate`` and the manifest.
        warning: a warning to show once (a local weights file that may need the other activation).
    """

    name: str
    input_size: int
    quick_gelu: bool
    activation: str
    warning: str | None = None


def check_perceptor(
    model: str, pretrained: str | None = None, quick_gelu: bool | None = None
) -> PerceptorCheck:
    """Everything :func:`load_perceptor` checks before it loads: the model name against open_clip's
    registry, the pretrained tag against the model's tags (and its weights in the cache or a reachable
    hub), a weights file or ``local-dir:`` folder that exists and is complete.

    Args:
        model: as for :func:`load_perceptor`.
        pretrained: as for :func:`load_perceptor`.
        quick_gelu: as for :func:`load_perceptor`.

    Returns:
        What would be loaded: name, input size and activation (with a warning when it is a guess).

    Raises:
        ModelLoadError: as :func:`load_perceptor` would, for the same reason, before any weights load.
    """
    plan = _plan(model, pretrained, quick_gelu)
    return PerceptorCheck(
        name=plan.name,
        input_size=_input_size(plan),
        quick_gelu=_uses_quick_gelu(plan),
        activation=_activation_reason(plan),
        warning=plan.warning,
    )


_OPENAI_ONLY_KEYS = ("input_resolution", "context_length", "vocab_size")
"""Entries of OpenAI's CLIP state dicts that open_clip's own layout does not have."""


def choose_activation(plan: _BuildPlan, quick_gelu: bool | None) -> _BuildPlan:
    """Decide QuickGELU or exact GELU for a planned load, and say why.

    In order: ``quick_gelu`` as the scene sets it; a tag's entry in open_clip's registry; an
    architecture that is QuickGELU by itself (``ViT-B-32-quickgelu``); a ``local-dir:`` folder's config
    that says ``quick_gelu``; weights recognised as a registry release (:func:`_recognise`); else the
    architecture's own activation, with a warning naming it and how to choose.

    Raises:
        ModelLoadError: ``quick_gelu: false`` for an architecture that is always QuickGELU.
    """
    arch_quick = bool(plan.model_cfg.get("quick_gelu", False))
    if quick_gelu is not None:
        if arch_quick and not quick_gelu:
            raise ModelLoadError(
                f"{plan.name}: quick_gelu: false, but this architecture is built with QuickGELU by its "
                "config; name the architecture without -quickgelu (or drop quick_gelu: false)"
            )
        said = f"quick_gelu: {str(quick_gelu).lower()} in the scene"
        return replace(plan, force_quick_gelu=quick_gelu, activation=f"{_act(quick_gelu)} ({said})")
    if plan.activation or arch_quick:
        return plan
    local_dir = plan.open_clip_name.startswith(LOCAL_DIR_PREFIX)
    if local_dir and "quick_gelu" in plan.model_cfg:
        return replace(plan, activation="GELU (the folder's open_clip_config.json)")
    weights = plan.hashed[1:] if local_dir else plan.hashed
    if not weights:
        return plan
    found = _recognise(weights[0])
    if found is not None:
        how, quick, openai_layout = found
        return replace(
            plan, force_quick_gelu=quick, activation=f"{_act(quick)} ({how})", openai_layout=openai_layout
        )
    return replace(
        plan,
        activation="GELU (the architecture's default: the weights are not recognised)",
        warning=(
            f"perceptor {plan.name}: the weights are not recognised as a release open_clip knows, so the "
            "model is built with exact GELU, the architecture's default; weights trained by OpenAI "
            "(pretrained: openai) need QuickGELU: add `quick_gelu: true` to this perceptor entry "
            "(`quick_gelu: false` keeps GELU and silences this warning)"
        ),
    )


def _act(quick_gelu: bool) -> str:
    return "QuickGELU" if quick_gelu else "GELU"


def _recognise(path: Path) -> tuple[str, bool, bool] | None:
    """Recognise weights as a release: ``(how, quick_gelu, in OpenAI's layout)``, or ``None``.

    - a file inside the Hugging Face cache folder of a registry tag's repository
      (``models--timm--vit_base_patch32_clip_224.openai/...``): that tag's activation;
    - OpenAI's TorchScript archive (the ``.pt`` files of the ``openai`` tags' URLs), or a state dict with
      OpenAI's ``input_resolution``/``context_length``/``vocab_size`` entries: QuickGELU.
    """
    folders = _registry_cache_folders()
    for part in path.parts:
        if part in folders:
            spec, quick = folders[part]
            return f"recognised as {spec} by its Hugging Face cache folder", quick, False
    layout = _openai_layout(path)
    if layout is not None:
        return f"recognised as OpenAI's weights: {layout}", True, True
    return None


def _registry_cache_folders() -> dict[str, tuple[str, bool]]:
    """``models--ORG--REPO`` → (``MODEL:TAG``, its quick_gelu) for every registry tag on the hub."""
    folders: dict[str, tuple[str, bool]] = {}
    for name, tag in open_clip.list_pretrained():
        cfg = open_clip.get_pretrained_cfg(name, tag)
        repo, _ = _hub_repo_and_files(cfg)
        if repo:
            folders.setdefault(
                "models--" + repo.replace("/", "--"), (f"{name}:{tag}", bool(cfg.get("quick_gelu")))
            )
    return folders


def _openai_layout(path: Path) -> str | None:
    """``"TorchScript archive"`` or ``"OpenAI's state dict layout"`` when ``path`` is in OpenAI's format."""
    try:
        if path.suffix.lower() == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), "pt") as f:
                keys = set(f.keys())
        elif zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
            if any(n.endswith("/constants.pkl") for n in names) and any("/code/" in n for n in names):
                return "TorchScript archive"
            loaded = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            loaded = loaded.get("state_dict", loaded) if isinstance(loaded, dict) else {}
            keys = set(loaded) if isinstance(loaded, dict) else set()
        else:
            return None
    except Exception:  # noqa: BLE001 - unreadable here: loading reports why, with the real error
        return None
    return "OpenAI's state dict layout" if set(_OPENAI_ONLY_KEYS) <= keys else None


def _openai_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The weights of an OpenAI-layout file, without OpenAI's extra entries (open_clip's CLIP names)."""
    if zipfile.is_zipfile(path) and path.suffix.lower() != ".safetensors":
        with zipfile.ZipFile(path) as archive:
            jit = any(n.endswith("/constants.pkl") for n in archive.namelist())
        if jit:  # TorchScript's own loader: it runs no pickled Python code
            with warnings.catch_warnings():  # torch.jit.load is deprecated, but OpenAI ships these
                warnings.simplefilter("ignore", FutureWarning)
                state = dict(torch.jit.load(str(path), map_location="cpu").state_dict())
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
            state = state.get("state_dict", state)
    else:
        from safetensors.torch import load_file

        state = load_file(str(path))
    return {k: v for k, v in state.items() if k not in _OPENAI_ONLY_KEYS}


def _identity(plan: _BuildPlan) -> str:
    """The perceptor's identity: the tag spec, or the prefix and the sha256 of the weight files."""
    return f"{plan.identity}:sha256={files_sha256(plan.hashed)}" if plan.hashed else plan.identity


def _input_size(plan: _BuildPlan) -> int:
    """The visual tower's input side from the architecture (open_clip's default: 224)."""
    size = plan.model_cfg.get("vision_cfg", {}).get("image_size", 224)
    height, width = (size, size) if isinstance(size, int) else size
    if height != width:
        raise ModelLoadError(f"{plan.name}: non-square input size {height}x{width} is not supported")
    return int(height)


def _uses_quick_gelu(plan: _BuildPlan) -> bool:
    """Whether open_clip will build the model with QuickGELU."""
    return plan.force_quick_gelu or bool(plan.model_cfg.get("quick_gelu", False))


def _activation_reason(plan: _BuildPlan) -> str:
    """Why the model gets its activation (one short phrase)."""
    if plan.activation:
        return plan.activation
    if plan.model_cfg.get("quick_gelu", False):
        return "QuickGELU (the architecture's config)"
    return "GELU (the architecture's config)"


def write_stand_in(directory: str | Path, *, seed: int = 0) -> Path:
    """Write a tiny random-weight open_clip model in the ``local-dir:`` layout.

    The stand-in (architecture ``pytti-stand-in``: 2-layer ViT and text towers, 224 px input, 32-d
    embeddings) lets tests and offline smoke runs exercise the real loading path without trained
    weights; its imagery is not guided by anything meaningful. The weights are stored as float16
    safetensors (about 2 MB) and are identical for the same ``seed``.

    Args:
        directory: the folder to write (created if needed); existing stand-in files are replaced.
        seed: seed of the random initialization.

    Returns:
        ``directory`` as a Path; load it with ``load_perceptor("local-dir:" + str(directory))``.
    """
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    model_cfg = package_model_config(STAND_IN_MODEL)
    net = random_model(STAND_IN_MODEL, seed)
    preprocess = _preprocess_cfg(net)
    state = {k: v.half() if v.is_floating_point() else v for k, v in net.state_dict().items()}
    save_local_dir(
        out,
        model_cfg,
        state,
        mean=preprocess["mean"],
        std=preprocess["std"],
        pytti={"stand_in": True, "seed": seed},
    )
    logger.info("wrote stand-in perceptor (seed %d) to %s", seed, out)
    return out


def random_model(name: str, seed: int) -> torch.nn.Module:
    """Build one of this package's architectures with random weights drawn from ``seed``.

    The global torch RNG is left as it was; open_clip's "no pretrained weights" warning is dropped.

    Args:
        name: a package architecture (``pytti-stand-in``, ``pytti-toy``).
        seed: seed of the initialization.

    Returns:
        The open_clip model on the CPU, in training mode.
    """
    _register_package_configs()
    with torch.random.fork_rng(devices=[]), _quiet_random_init_warning():
        torch.manual_seed(seed)
        net: torch.nn.Module = open_clip.create_model(name, pretrained=None)
    return net


def save_local_dir(
    directory: str | Path,
    model_cfg: dict[str, Any],
    state: dict[str, torch.Tensor],
    *,
    mean: Sequence[float],
    std: Sequence[float],
    pytti: dict[str, Any] | None = None,
) -> Path:
    """Write an open_clip model in the ``local-dir:`` layout (config JSON + safetensors weights).

    The weights are written before the config, each through a temporary file and a rename, so an
    interrupted write never leaves a folder that looks complete.

    Args:
        directory: the folder (created if needed); existing files of the same names are replaced.
        model_cfg: the architecture (open_clip's model config dict).
        state: the model's state dict (tensors are stored as given, made contiguous).
        mean: per-channel normalization mean of the preprocess config.
        std: per-channel normalization std.
        pytti: extra information stored under the config's ``pytti`` entry (open_clip ignores it).

    Returns:
        ``directory`` as a Path.
    """
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    config = {
        "model_cfg": model_cfg,
        "preprocess_cfg": {"mean": [float(v) for v in mean], "std": [float(v) for v in std]},
        "pytti": pytti or {},
    }
    partial = out / f".{_STAND_IN_WEIGHTS}.partial"
    save_file({k: v.contiguous() for k, v in state.items()}, str(partial), metadata={"format": "pt"})
    os.replace(partial, out / _STAND_IN_WEIGHTS)
    partial = out / f".{_LOCAL_DIR_CONFIG}.partial"
    partial.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    os.replace(partial, out / _LOCAL_DIR_CONFIG)
    return out


def read_local_dir_info(directory: str | Path) -> dict[str, Any]:
    """The ``pytti`` entry of a local-dir folder's config (``{}`` when absent or unreadable)."""
    try:
        config = json.loads((Path(directory) / _LOCAL_DIR_CONFIG).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    info = config.get("pytti") if isinstance(config, dict) else None
    return info if isinstance(info, dict) else {}


def available_models() -> list[tuple[str, str | None, bool]]:
    """Every (architecture, pretrained tag, weights in the local Hugging Face cache) open_clip knows.

    Returns:
        One tuple per registered (model, tag) pair, in open_clip's order.
    """
    rows: list[tuple[str, str | None, bool]] = []
    for name, tag in open_clip.list_pretrained():
        cfg = open_clip.get_pretrained_cfg(name, tag)
        rows.append((name, tag, _cached_tag_weights(cfg) is not None))
    return rows


# ----------------------------------------------------------------------------------------------------
# Planning: turn (model, pretrained) into a _BuildPlan, raising ModelLoadError for anything unusable.


def _plan(model: str, pretrained: str | None, quick_gelu: bool | None = None) -> _BuildPlan:
    """Validate the request and decide how to call open_clip (activation included)."""
    return choose_activation(_plan_weights(model, pretrained), quick_gelu)


def _plan_weights(model: str, pretrained: str | None) -> _BuildPlan:
    """Validate the request and find the weights (the activation is the tag's or the architecture's)."""
    if model.startswith(LOCAL_DIR_PREFIX):
        if pretrained is not None:
            raise ModelLoadError(
                f"{model}: a local-dir model takes its weights from the folder; drop pretrained={pretrained!r}"
            )
        return _plan_local_dir(model[len(LOCAL_DIR_PREFIX) :])
    if model.startswith("hf-hub:"):
        raise ModelLoadError(
            f"{model}: hf-hub: models are not supported; download the repository "
            "(`huggingface-cli download ORG/REPO --local-dir DIR`) and use `model: local-dir:DIR`"
        )
    if pretrained is None and ":" in model:
        model, pretrained = model.split(":", 1)
    _check_model_name(model)
    if pretrained is None:
        tags = open_clip.list_pretrained_tags_by_model(model)
        raise ModelLoadError(
            f"{model}: no weights given; set `pretrained:` to a tag ({_preview(tags)}) or to a weights file"
        )
    if open_clip.get_pretrained_cfg(model, pretrained):
        return _plan_tag(model, pretrained)
    return _plan_file(model, pretrained)


def _plan_local_dir(directory: str) -> _BuildPlan:
    """A ``local-dir:`` folder: check config and weights exist; identity hashes their contents."""
    if not directory:
        raise ModelLoadError("local-dir: needs a folder path, e.g. `model: local-dir:/models/my-clip`")
    path = Path(directory).expanduser().resolve()
    if not path.is_dir():
        raise ModelLoadError(f"local-dir model folder not found: {path}")
    config_path = path / _LOCAL_DIR_CONFIG
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise ModelLoadError(f"local-dir model folder {path} has no {_LOCAL_DIR_CONFIG}") from e
    except (OSError, ValueError) as e:
        raise ModelLoadError(f"local-dir model config {config_path} is unreadable: {e}") from e
    if not isinstance(config, dict) or "model_cfg" not in config:
        raise ModelLoadError(f"local-dir model config {config_path} has no 'model_cfg' entry")
    weights = _local_dir_weights(path)
    if not weights:
        raise ModelLoadError(
            f"local-dir model folder {path} has no weights file (open_clip_model.safetensors, *.bin or *.pth)"
        )
    _check_hub_text_tower(f"local-dir:{path}", config["model_cfg"])
    name = LOCAL_DIR_PREFIX + str(path)
    model_cfg = config["model_cfg"]
    return _BuildPlan(
        open_clip_name=name,
        pretrained=None,
        name=name,
        identity="local-dir",
        model_cfg=model_cfg if isinstance(model_cfg, dict) else {},
        hashed=(config_path, *weights),
    )


def _local_dir_weights(path: Path) -> list[Path]:
    """The weights files open_clip would find in a local-dir folder, sorted."""
    return sorted({p for pattern in _LOCAL_DIR_WEIGHT_GLOBS for p in path.glob(pattern)})


def weight_files(model: str, pretrained: str | None) -> list[Path]:
    """The local files a perceptor's weights come from (empty for a pretrained tag): a weights file, or a
    local-dir folder's config and weights files. Files that do not exist are left out."""
    if model.startswith(LOCAL_DIR_PREFIX):
        path = Path(model[len(LOCAL_DIR_PREFIX) :]).expanduser().resolve()
        config = path / _LOCAL_DIR_CONFIG
        return [config, *_local_dir_weights(path)] if config.is_file() else []
    if pretrained is None and ":" in model:
        model, pretrained = model.split(":", 1)
    if pretrained is None or open_clip.get_pretrained_cfg(model, pretrained):
        return []
    path = Path(pretrained).expanduser()
    return [path.resolve()] if path.is_file() else []


def weights_identity(model: str, pretrained: str | None, sha256: Hasher = file_sha256) -> str:
    """The :attr:`Perceptor.identity` :func:`load_perceptor` gives, without building the model.

    ``MODEL:TAG`` for a pretrained tag; ``MODEL:sha256=…`` of a weights file; ``local-dir:sha256=…`` of a
    folder's config and weights. A file or folder that is missing gives ``MODEL:PRETRAINED`` (loading
    it fails with the reason). ``sha256``: how files are hashed (a run directory's
    :class:`~pytti_engine.hashes.HashCache`).
    """
    files = weight_files(model, pretrained)
    if model.startswith(LOCAL_DIR_PREFIX):
        return f"local-dir:sha256={files_sha256(files, sha256)}" if len(files) > 1 else model
    if pretrained is None and ":" in model:
        model, pretrained = model.split(":", 1)
    if files:
        return f"{model}:sha256={files_sha256(files, sha256)}"
    return f"{model}:{pretrained}"


def _plan_tag(model: str, tag: str) -> _BuildPlan:
    """A registry tag: use the cache, or the hub only when it answers; else fail fast."""
    cfg = open_clip.get_pretrained_cfg(model, tag)
    spec = f"{model}:{tag}"
    quick_gelu = bool(cfg.get("quick_gelu", False))
    how_to_fix = _HOW_TO_PROVIDE.format(spec=spec)
    cached = _cached_tag_weights(cfg)
    offline_flag = bool(hf_constants.HF_HUB_OFFLINE)
    model_cfg = open_clip.get_model_config(model) or {}
    tagged = _BuildPlan(
        model,
        tag,
        spec,
        spec,
        force_quick_gelu=quick_gelu,
        model_cfg=model_cfg,
        how_to_fix=how_to_fix,
        activation=f"{'QuickGELU' if quick_gelu else 'GELU'} (open_clip's registry for {spec})",
    )
    if offline_flag and cached is not None:
        _check_hub_text_tower(spec, model_cfg, reachable=False)
        return tagged
    reachable = not offline_flag and _hub_reachable()
    if reachable:
        return tagged
    if cached is None:
        raise ModelLoadError(_missing_weights_message(model, tag, cfg, offline_flag))
    # Cached but the hub is unreachable and HF_HUB_OFFLINE is unset: hf_hub_download would retry for
    # tens of seconds before falling back to the cache, so hand open_clip the cached file itself and
    # carry over what the tag would have set (activation, preprocessing).
    _check_hub_text_tower(spec, model_cfg, reachable=False)
    logger.info("%s: hub unreachable, loading cached weights %s", spec, cached)
    keys = ("mean", "std", "interpolation", "resize_mode")
    preprocess = {k: cfg[k] for k in keys if k in cfg}
    return replace(tagged, pretrained=cached, force_preprocess_cfg=preprocess)


def _plan_file(model: str, pretrained: str) -> _BuildPlan:
    """A weights file path (or an unknown tag, which is reported with close matches)."""
    path = Path(pretrained).expanduser()
    looks_like_path = os.sep in pretrained or "/" in pretrained or path.suffix.lower() in _WEIGHT_SUFFIXES
    if not path.is_file():
        if looks_like_path or path.exists():
            raise ModelLoadError(f"{model}: pretrained weights file not found: {path.resolve()}")
        tags = open_clip.list_pretrained_tags_by_model(model)
        hint = _did_you_mean(pretrained, tags)
        raise ModelLoadError(
            f"{model}: {pretrained!r} is neither a pretrained tag nor a file{hint} Known tags: {_preview(tags)}"
        )
    resolved = path.resolve()
    return _BuildPlan(
        open_clip_name=model,
        pretrained=str(resolved),
        name=f"{model}:{resolved}",
        identity=model,
        model_cfg=open_clip.get_model_config(model) or {},
        hashed=(resolved,),
    )


def _check_model_name(model: str) -> None:
    """Raise ModelLoadError for an architecture open_clip does not know, listing close matches."""
    if model in _package_config_names():
        _register_package_configs()
    known = open_clip.list_models()
    if model in known:
        return
    raise ModelLoadError(f"unknown open_clip model {model!r}{_did_you_mean(model, known)}")


def _check_hub_text_tower(spec: str, model_cfg: dict[str, Any], *, reachable: bool | None = None) -> None:
    """Models with a Hugging Face text tower/tokenizer fetch hub files even with local weights."""
    text_cfg = model_cfg.get("text_cfg", {})
    if not any(k in text_cfg for k in ("hf_model_name", "hf_tokenizer_name")):
        return
    if hf_constants.HF_HUB_OFFLINE:
        return  # hub calls fail fast and use the cache; a miss surfaces as a load error
    if reachable is None:
        reachable = _hub_reachable()
    if not reachable:
        raise ModelLoadError(
            f"{spec}: this model needs its tokenizer/text-tower files from the Hugging Face hub "
            f"({hf_constants.ENDPOINT} is unreachable); if they are cached, set HF_HUB_OFFLINE=1 "
            "before starting, otherwise fetch them once on a connected machine"
        )


def _missing_weights_message(model: str, tag: str, cfg: dict[str, Any], offline_flag: bool) -> str:
    """The one-line 'weights missing' explanation."""
    repo, _ = _hub_repo_and_files(cfg)
    why = "HF_HUB_OFFLINE is set" if offline_flag else f"{hf_constants.ENDPOINT} cannot be reached"
    return (
        f"weights for perceptor {model} (pretrained: {tag}) are not available: they are not in the "
        f"Hugging Face cache ({hf_constants.HF_HUB_CACHE}, repo {repo}) and {why}. "
        + _HOW_TO_PROVIDE.format(spec=f"{model}:{tag}")
    )


# ----------------------------------------------------------------------------------------------------
# Building.


def _create(plan: _BuildPlan, device: torch.device | str) -> torch.nn.Module:
    """Call open_clip's factory; its exceptions become ModelLoadError."""
    try:
        if plan.openai_layout and plan.pretrained is not None:  # open_clip's file loader refuses these
            with _quiet_random_init_warning():
                net: torch.nn.Module = open_clip.create_model(
                    plan.open_clip_name, pretrained=None, force_quick_gelu=plan.force_quick_gelu
                )
            state = _openai_state_dict(Path(plan.pretrained))
            buffers = {name for name, _ in net.named_buffers()} - set(net.state_dict())
            net.load_state_dict({k: v for k, v in state.items() if k not in buffers})  # TorchScript keeps
            return net.to(device)  # non-persistent buffers (attn_mask) in its state dict
        return open_clip.create_model(
            plan.open_clip_name,
            pretrained=plan.pretrained,
            device=device,
            force_quick_gelu=plan.force_quick_gelu,
            force_preprocess_cfg=plan.force_preprocess_cfg or None,
            require_pretrained=True,
        )
    except Exception as e:  # open_clip raises RuntimeError/ValueError/OSError/SafetensorError/...
        message = f"could not load perceptor {plan.name}: {_one_line(e)}"
        raise ModelLoadError(f"{message}. {plan.how_to_fix}" if plan.how_to_fix else message) from e


def _tokenizer(plan: _BuildPlan) -> Callable[..., torch.Tensor]:
    """open_clip's tokenizer for the model (a SimpleTokenizer for the built-in text towers)."""
    try:
        tokenizer: Callable[..., torch.Tensor] = open_clip.get_tokenizer(plan.open_clip_name)
    except Exception as e:  # HF tokenizers can fail with OSError/ValueError/...
        raise ModelLoadError(f"could not load the tokenizer of perceptor {plan.name}: {_one_line(e)}") from e
    return tokenizer


def _hub_repo_and_files(cfg: dict[str, Any]) -> tuple[str, list[str]]:
    """The hub repo of a tag and the file names open_clip tries, in its order."""
    repo, filename = os.path.split(cfg.get("hf_hub", ""))
    filename = filename or HF_WEIGHTS_NAME
    files = []
    if filename == HF_WEIGHTS_NAME:
        files.append(HF_SAFE_WEIGHTS_NAME)
    elif filename.endswith((".bin", ".pth")):
        files.append(filename[:-4] + ".safetensors")
    return repo, [*files, filename]


def _cached_tag_weights(cfg: dict[str, Any]) -> str | None:
    """Path of a tag's weights in the Hugging Face cache, or None."""
    if "file" in cfg:
        return str(cfg["file"]) if os.path.isfile(cfg["file"]) else None
    repo, files = _hub_repo_and_files(cfg)
    if not repo:
        return None
    for filename in files:
        found = try_to_load_from_cache(repo, filename)
        if isinstance(found, str):
            return found
    return None


def _hub_reachable(timeout: float = PROBE_TIMEOUT_S) -> bool:
    """Whether a TCP connection to the hub endpoint (or its proxy) opens within ``timeout`` seconds.

    DNS resolution has no timeout of its own, so the whole probe runs in a daemon thread.
    """
    url = urllib.parse.urlsplit(hf_constants.ENDPOINT)
    host, port = url.hostname or "", url.port or (443 if url.scheme == "https" else 80)
    proxy = urllib.request.getproxies().get(url.scheme)
    if proxy and host and not urllib.request.proxy_bypass(host):
        proxy_url = urllib.parse.urlsplit(proxy if "://" in proxy else "http://" + proxy)
        host, port = proxy_url.hostname or host, proxy_url.port or 80
    if not host:
        return False
    result: list[bool] = []

    def probe() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=probe, name="pytti-hub-probe", daemon=True)
    thread.start()
    thread.join(timeout)
    reachable = bool(result and result[0])
    logger.debug("hub probe %s:%s -> %s", host, port, reachable)
    return reachable


# ----------------------------------------------------------------------------------------------------
# Package model configs (read-only package data registered with open_clip's config registry).


def _package_config_dir() -> Path:
    """The folder holding this package's open_clip model configs."""
    return Path(str(resources.files("pytti_engine") / "model_configs"))


def _package_config_names() -> list[str]:
    """Architecture names defined by the package's model configs."""
    return sorted(p.stem for p in _package_config_dir().glob("*.json"))


def package_model_config(name: str) -> dict[str, Any]:
    """One of this package's open_clip model configs (``model_configs/NAME.json``) as a dict."""
    config: dict[str, Any] = json.loads((_package_config_dir() / f"{name}.json").read_text(encoding="utf-8"))
    return config


def _register_package_configs() -> None:
    """Add the package's configs to open_clip's model registry (idempotent; package data only)."""
    if not set(_package_config_names()) <= set(open_clip.list_models()):
        open_clip.add_model_config(_package_config_dir())


@contextlib.contextmanager
def _quiet_random_init_warning() -> Iterator[None]:
    """Drop open_clip's 'No pretrained weights loaded' warning while deliberately building random weights."""

    def keep(record: logging.LogRecord) -> bool:
        return "No pretrained weights loaded" not in record.getMessage()

    root = logging.getLogger()
    root.addFilter(keep)
    try:
        yield
    finally:
        root.removeFilter(keep)


# ----------------------------------------------------------------------------------------------------
# Small helpers.


def _did_you_mean(word: str, choices: Sequence[str]) -> str:
    """``"; did you mean: a, b?"`` from case-insensitive close matches, or ``"."``."""
    lowered = {c.lower(): c for c in choices}
    matches = difflib.get_close_matches(word.lower(), list(lowered), n=5, cutoff=0.6)
    return f"; did you mean: {', '.join(lowered[m] for m in matches)}?" if matches else "."


def _preview(items: Sequence[str], limit: int = 8) -> str:
    """A short comma-separated listing."""
    if not items:
        return "none registered"
    shown = ", ".join(items[:limit])
    return shown + (f", ... ({len(items)} in all)" if len(items) > limit else "")


def _one_line(error: BaseException, limit: int = 300) -> str:
    """An exception as one line, shortened (open_clip's messages can span many lines)."""
    text = " ".join(str(error).split())
    text = text if len(text) <= limit else text[: limit - 3] + "..."
    return f"{type(error).__name__}: {text}"


def _preprocess_cfg(net: torch.nn.Module) -> dict[str, Any]:
    """The preprocess config open_clip attaches to the visual tower (size, mean, std, ...)."""
    visual: Any = getattr(net, "visual", net)
    cfg: dict[str, Any] = visual.preprocess_cfg
    return cfg


def _triple(values: Any) -> tuple[float, float, float]:
    """A 3-tuple of floats from a preprocess-config entry."""
    items = [float(v) for v in values]
    if len(items) != 3:
        raise ModelLoadError(f"expected 3 normalization values, got {items}")
    return items[0], items[1], items[2]
