"""Where VQGAN weights are, and what their taming-transformers config says (no torch import).

A VQGAN is a pair of files in taming-transformers' layout: ``<name>.yaml`` (the model config:
``model.target`` and ``model.params`` with ``ddconfig``, ``n_embed``, ``embed_dim``) and ``<name>.ckpt``
(a Lightning checkpoint whose ``state_dict`` holds the weights). PyTTI names five of them
(:data:`KNOWN_VQGANS`) and keeps them in ``<models_parent_dir>/vqgan/``. A scene names one
(``vqgan_model: imagenet``) or gives any other pair (``vqgan_model: {config: x.yaml, checkpoint:
x.ckpt}``).

A named model is looked for, in this order, in

1. ``<models_dir>/vqgan/`` (the scene's ``models_dir``; PyTTI's ``models_parent_dir``),
2. ``$PYTTI_MODELS_DIR/vqgan/``,
3. ``<user cache>/vqgan/`` (``$XDG_CACHE_HOME`` or ``~/.cache``: PyTTI's default ``models_parent_dir``),
4. the Hugging Face cache, as files of the hub copy :data:`HUB_REPO` (``<name>/<name>.yaml|.ckpt``),

under its own name or the file names the original downloads used (``vqgan_imagenet_f16_16384.ckpt``,
...). Nothing is ever downloaded here: ``pytti models fetch vqgan:NAME`` does that, on request.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from pytti_engine.errors import ModelLoadError
from pytti_engine.hashes import Hasher, file_sha256

ENV_MODELS_DIR = "PYTTI_MODELS_DIR"
"""Environment variable naming a models folder (VQGAN files in its ``vqgan/`` subfolder)."""
HUB_REPO = "Somnai/pytti-vqgan-checkpoints"
"""The Hugging Face hub copy of PyTTI's VQGAN files (``<name>/<name>.yaml`` and ``<name>/<name>.ckpt``)."""
SUBFOLDER = "vqgan"

VQGANKind = Literal["vq", "gumbel"]


@dataclass(frozen=True)
class KnownVQGAN:
    """One of the VQGANs PyTTI names (``vqgan_model``).

    Attributes:
        name: PyTTI's name.
        description: what it is.
        factor: pixels per latent cell (16, or 8 for the gumbel f8 model).
        gumbel: whether it is taming's ``GumbelVQ`` (learning rate 0.15 instead of 0.1).
        aliases: other file stems the original downloads are commonly saved under.
    """

    name: str
    description: str
    factor: int
    gumbel: bool = False
    aliases: tuple[str, ...] = ()

    @property
    def stems(self) -> tuple[str, ...]:
        """File stems to look for, PyTTI's own name first."""
        return (self.name, *self.aliases)


KNOWN_VQGANS: Mapping[str, KnownVQGAN] = {
    k.name: k
    for k in (
        KnownVQGAN("imagenet", "ImageNet, f16, 16384 codes", 16, aliases=("vqgan_imagenet_f16_16384",)),
        KnownVQGAN(
            "wikiart", "WikiArt, f16, 16384 codes", 16, aliases=("wikiart_16384", "wikiart_f16_16384_8145600")
        ),
        KnownVQGAN("sflckr", "S-FLCKR landscapes, f16, 1024 codes (first stage)", 16),
        KnownVQGAN("coco", "COCO, f16, 8192 codes (first stage)", 16, aliases=("coco_first_stage",)),
        KnownVQGAN(
            "openimages",
            "Open Images, gumbel f8, 8192 codes",
            8,
            gumbel=True,
            aliases=("vqgan_gumbel_f8_8192", "vqgan_gumbel_f8", "gumbel_8192"),
        ),
    )
}
"""PyTTI's ``vqgan_model`` names (a read-only registry of package data)."""


@dataclass(frozen=True)
class VQGANFiles:
    """A VQGAN's two files.

    Attributes:
        name: the scene's name for it (``imagenet``) or ``custom`` for an explicit pair.
        config: the ``.yaml`` file.
        checkpoint: the ``.ckpt`` file.
        source: where it was found (for messages and the manifest).
    """

    name: str
    config: Path
    checkpoint: Path
    source: str = ""


@dataclass(frozen=True)
class VQGANConfig:
    """What a taming-transformers model config says about the autoencoder.

    Attributes:
        target: ``model.target`` (``taming.models.vqgan.VQModel``, ``...GumbelVQ`` or
            ``taming.models.cond_transformer.Net2NetTransformer``).
        kind: ``vq`` (nearest-codebook quantizer ``quantize.embedding``) or ``gumbel``
            (``quantize.proj`` + ``quantize.embed``).
        prefix: where the autoencoder's keys sit in the checkpoint's ``state_dict``
            (``first_stage_model.`` for a Net2NetTransformer).
        ddconfig: the encoder/decoder config (``ch``, ``ch_mult``, ``num_res_blocks``, ...).
        n_embed: codebook size.
        embed_dim: codebook vector size (the latent's channels).
    """

    target: str
    kind: VQGANKind
    prefix: str
    ddconfig: Mapping[str, Any] = field(hash=False)
    n_embed: int
    embed_dim: int

    @property
    def factor(self) -> int:
        """Pixels per latent cell: ``2 ** (len(ch_mult) - 1)``."""
        return int(2 ** (len(self.ddconfig["ch_mult"]) - 1))

    @property
    def default_learning_rate(self) -> float:
        """PyTTI's learning rate for this model: 0.1, or 0.15 for a gumbel model."""
        return 0.15 if self.kind == "gumbel" else 0.1

    def canonical(self) -> dict[str, Any]:
        """JSON-friendly identity of the architecture (independent of YAML formatting)."""
        return {
            "target": self.target,
            "ddconfig": dict(self.ddconfig),
            "n_embed": self.n_embed,
            "embed_dim": self.embed_dim,
        }


_TARGETS = {
    "taming.models.vqgan.VQModel": "vq",
    "taming.models.vqgan.VQNoDiscModel": "vq",
    "taming.models.vqgan.GumbelVQ": "gumbel",
}
_NET2NET = "taming.models.cond_transformer.Net2NetTransformer"
_DDCONFIG_KEYS = ("ch", "ch_mult", "num_res_blocks", "attn_resolutions", "resolution", "z_channels")
NORM_GROUPS = 32
"""taming's ``Normalize`` is ``GroupNorm(32, C)``: every channel count must be a multiple of it."""


def read_vqgan_config(path: Path) -> VQGANConfig:
    """Parse a taming-transformers model config.

    Args:
        path: the ``.yaml`` file.

    Returns:
        The autoencoder's config.

    Raises:
        ModelLoadError: unreadable, not a taming VQGAN config, or an architecture this loader cannot
            build (``double_z``, ``tanh_out``, channels not multiples of 32, ...).
    """
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise ModelLoadError(f"VQGAN config {path}: cannot read it ({type(e).__name__}: {e})") from e
    model = data.get("model") if isinstance(data, dict) else None
    if not isinstance(model, dict) or not isinstance(model.get("params"), dict):
        raise ModelLoadError(f"VQGAN config {path}: no model.target/model.params (not a taming config)")
    target, params, prefix = str(model.get("target")), model["params"], ""
    if target == _NET2NET:
        first = params.get("first_stage_config")
        if not isinstance(first, dict) or not isinstance(first.get("params"), dict):
            raise ModelLoadError(f"VQGAN config {path}: a Net2NetTransformer without first_stage_config")
        target, params, prefix = str(first.get("target")), first["params"], "first_stage_model."
    kind = _TARGETS.get(target)
    if kind is None:
        raise ModelLoadError(
            f"VQGAN config {path}: model.target {target!r} is not a taming VQGAN "
            f"(expected one of {', '.join(sorted([*_TARGETS, _NET2NET]))})"
        )
    ddconfig = params.get("ddconfig")
    if not isinstance(ddconfig, dict):
        raise ModelLoadError(f"VQGAN config {path}: model.params.ddconfig is missing")
    config = VQGANConfig(
        target=target,
        kind=kind,  # type: ignore[arg-type]
        prefix=prefix,
        ddconfig=_defaults(ddconfig),
        n_embed=_int(params.get("n_embed"), path, "n_embed"),
        embed_dim=_int(params.get("embed_dim"), path, "embed_dim"),
    )
    problem = architecture_problem(config)
    if problem is not None:
        raise ModelLoadError(f"VQGAN config {path}: {problem}")
    return config


def _defaults(ddconfig: Mapping[str, Any]) -> dict[str, Any]:
    """taming's defaults for the keys a config may leave out."""
    out = {"in_channels": 3, "out_ch": 3, "double_z": False, "dropout": 0.0, "resamp_with_conv": True}
    out.update(ddconfig)
    return out


def _int(value: Any, path: Path, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ModelLoadError(f"VQGAN config {path}: {key} must be a positive integer, got {value!r}")
    return value


def architecture_problem(config: VQGANConfig) -> str | None:
    """Why this loader cannot build ``config``'s autoencoder, or ``None``."""
    dd = config.ddconfig
    missing = [k for k in _DDCONFIG_KEYS if k not in dd]
    if missing:
        return f"ddconfig lacks {', '.join(missing)}"
    ch_mult = dd["ch_mult"]
    if not isinstance(ch_mult, list | tuple) or not ch_mult or not all(isinstance(m, int) for m in ch_mult):
        return f"ddconfig.ch_mult must be a list of integers, got {ch_mult!r}"
    if dd.get("double_z") or dd.get("tanh_out") or dd.get("give_pre_end"):
        return "double_z / tanh_out / give_pre_end are not VQGAN settings this loader supports"
    if not dd.get("resamp_with_conv", True):
        return "resamp_with_conv: false is not supported"
    channels = [int(dd["ch"]) * int(m) for m in ch_mult]
    if any(c % NORM_GROUPS for c in channels):
        return f"channel counts {channels} must be multiples of {NORM_GROUPS} (taming's GroupNorm)"
    if config.kind == "gumbel" and int(dd["z_channels"]) != config.embed_dim:
        return f"gumbel model with z_channels {dd['z_channels']} != embed_dim {config.embed_dim}"
    return None


def vqgan_factor(model: str | Mapping[str, Any], base_dir: Path | None = None) -> int | None:
    """Pixels per latent cell of a scene's ``vqgan_model`` value, without loading anything.

    A known name answers from :data:`KNOWN_VQGANS`; an explicit ``{config: ...}`` reads the YAML.
    ``None`` when it cannot tell (the scene's validation then reports the problem).
    """
    if isinstance(model, str):
        known = KNOWN_VQGANS.get(model)
        return None if known is None else known.factor
    config = model.get("config") if isinstance(model, Mapping) else None
    if not isinstance(config, str | Path):
        return None
    path = Path(config).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    try:
        return read_vqgan_config(path).factor
    except ModelLoadError:
        return None


def user_cache_dir() -> Path:
    """PyTTI's default ``models_parent_dir``: ``$XDG_CACHE_HOME`` or ``~/.cache``."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")


def search_dirs(models_dir: Path | None) -> list[tuple[Path, str]]:
    """The ``vqgan/`` folders a named model is looked for in, with what each one is."""
    dirs: list[tuple[Path, str]] = []
    if models_dir is not None:
        dirs.append((Path(models_dir) / SUBFOLDER, "models_dir"))
    env = os.environ.get(ENV_MODELS_DIR)
    if env:
        dirs.append((Path(env).expanduser() / SUBFOLDER, ENV_MODELS_DIR))
    dirs.append((user_cache_dir() / SUBFOLDER, "default"))
    return dirs


def hub_filenames(name: str) -> tuple[str, str]:
    """The hub copy's file names of a known model: ``(config, checkpoint)``."""
    return f"{name}/{name}.yaml", f"{name}/{name}.ckpt"


def hub_cache_dir() -> Path:
    """The Hugging Face hub cache (``$HF_HUB_CACHE``, else ``$HF_HOME/hub``, else the library default)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]) / "hub"
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def _from_hub_cache(name: str) -> VQGANFiles | None:
    from huggingface_hub import try_to_load_from_cache

    config_name, ckpt_name = hub_filenames(name)
    cache = hub_cache_dir()
    config = try_to_load_from_cache(HUB_REPO, config_name, cache_dir=cache)
    ckpt = try_to_load_from_cache(HUB_REPO, ckpt_name, cache_dir=cache)
    if isinstance(config, str) and isinstance(ckpt, str):
        return VQGANFiles(name, Path(config), Path(ckpt), f"Hugging Face cache ({HUB_REPO})")
    return None


def find_vqgan_files(model: str | Mapping[str, Any], models_dir: Path | None = None) -> VQGANFiles:
    """Locate a scene's VQGAN files (see the module docstring for the search order).

    Args:
        model: a known name (``imagenet``), or a mapping with ``config`` and ``checkpoint`` paths
            (already resolved against the scene file's folder), or an object with those attributes.
        models_dir: the scene's ``models_dir`` (resolved), or ``None``.

    Returns:
        The two files.

    Raises:
        ModelLoadError: one line naming the missing files, every place they were looked for, and how to
            provide them.
    """
    if not isinstance(model, str):
        config, ckpt = _pair(model)
        missing = [str(p) for p in (config, ckpt) if not p.is_file()]
        if missing:
            raise ModelLoadError(f"vqgan_model: file not found: {', '.join(missing)}")
        return VQGANFiles("custom", config, ckpt, "scene")
    known = KNOWN_VQGANS.get(model)
    if known is None:
        raise ModelLoadError(
            f"vqgan_model: unknown name {model!r} (one of {', '.join(KNOWN_VQGANS)}, "
            "or {config: FILE.yaml, checkpoint: FILE.ckpt})"
        )
    halves: list[str] = []
    for folder, what in search_dirs(models_dir):
        for stem in known.stems:
            config, ckpt = folder / f"{stem}.yaml", folder / f"{stem}.ckpt"
            if config.is_file() and ckpt.is_file():
                return VQGANFiles(model, config, ckpt, f"{folder} ({what})")
            if config.is_file() != ckpt.is_file():
                have, lack = (config, ckpt) if config.is_file() else (ckpt, config)
                halves.append(f"{have} is there but {lack.name} is not")
    cached = _from_hub_cache(model)
    if cached is not None:
        return cached
    raise ModelLoadError(_missing_message(known, models_dir, halves))


def _pair(model: Any) -> tuple[Path, Path]:
    if isinstance(model, Mapping):
        return Path(model["config"]), Path(model["checkpoint"])
    return Path(model.config), Path(model.checkpoint)


def _missing_message(known: KnownVQGAN, models_dir: Path | None, halves: Sequence[str]) -> str:
    places = [f"{folder} ({what})" for folder, what in search_dirs(models_dir)]
    places.append(f"the Hugging Face cache {hub_cache_dir()} ({HUB_REPO})")
    names = f"{known.name}.yaml and {known.name}.ckpt"
    if known.aliases:
        names += f" (or {known.aliases[0]}.yaml/.ckpt)"
    partial = f"; {'; '.join(halves)}" if halves else ""
    return (
        f"vqgan_model {known.name!r}: {names} not found; looked in {', '.join(places)}{partial}. "
        f"Copy the two files into one of those folders, set models_dir in the scene or {ENV_MODELS_DIR}, "
        f"or download them on a connected machine with `pytti models fetch vqgan:{known.name}`"
    )


def vqgan_identity(files: VQGANFiles, sha256: Hasher = file_sha256) -> dict[str, Any]:
    """What identifies a VQGAN's weights, independent of where the files are (frame keys, manifest).

    The checkpoint's sha256 and a sha256 of the parsed architecture (YAML formatting and comments do
    not count).
    """
    config = read_vqgan_config(files.config)
    arch = json.dumps(config.canonical(), sort_keys=True, default=str)
    return {
        "vqgan_model": files.name,
        "checkpoint_sha256": sha256(files.checkpoint),
        "config_sha256": hashlib.sha256(arch.encode()).hexdigest(),
    }


def vqgan_files(scene: Any) -> VQGANFiles | None:
    """The VQGAN files of an ``image_model: vqgan`` scene (``None`` for other image models).

    Raises:
        ModelLoadError: the files are not where the scene, ``PYTTI_MODELS_DIR``, the user cache or the
            Hugging Face cache would have them (one line naming the files and every place looked in).
    """
    if scene.image_model != "vqgan":
        return None
    model = scene.vqgan
    spec: Any = model if isinstance(model, str) else {"config": model.config, "checkpoint": model.checkpoint}
    return find_vqgan_files(spec, scene.models_dir)


def check_image_model(scene: Any) -> VQGANFiles | None:
    """The up-front check of the image model's files (cheap: no torch model is built).

    For a vqgan scene: the files exist, the config is a VQGAN this engine builds, a named model has
    the factor its name promises (the scene's size was rounded to it), and diffusers is installed.

    Returns:
        The VQGAN files, or ``None`` for other image models.

    Raises:
        ModelLoadError: what is missing or wrong, in one line.
    """
    files = vqgan_files(scene)
    if files is None:
        return None
    config = read_vqgan_config(files.config)
    known = KNOWN_VQGANS.get(files.name)
    if known is not None and config.factor != known.factor:
        raise ModelLoadError(
            f"vqgan_model {files.name!r}: {files.config} describes an f{config.factor} model, but "
            f"{files.name} is f{known.factor}; name the files explicitly with "
            "vqgan_model: {config: ..., checkpoint: ...}"
        )
    if importlib.util.find_spec("diffusers") is None:
        raise ModelLoadError(
            "image_model: vqgan needs diffusers, which is not installed: pip install 'pytti-flow[vqgan]'"
        )
    return files
