"""VQGAN image model (PyTTI's ``VQGANImage``): a latent grid decoded by a taming-transformers VQGAN.

The parameter is the pre-quantization latent ``z`` :math:`(1, E, H/f, W/f)` (channels first, so warps
treat it like any other grid). Every decode snaps each latent vector to its nearest codebook vector
(squared distance), passes the gradient straight through to ``z``, runs the VQGAN decoder and maps
``[-1, 1]`` to ``[0, 1]`` (clamped, with a pass-through gradient). A random start is a grid of random
codebook entries; a picture is encoded with the VQGAN encoder. Learning rate 0.1 (0.15 for a gumbel
model); output frames show a bias-corrected EMA of ``z`` (decay 0.99 unless the scene says otherwise).

Warps (``vqgan_warp``): ``pixels`` (PyTTI's) decodes the output latent, warps the picture, re-encodes it
and resets the EMA; ``latent`` warps ``z`` (and its EMA and Adam moments) directly on the latent grid,
which costs no decoder/encoder pass.

The network is diffusers' maintained ``VQModel``, loaded from taming's checkpoint layout by
:func:`taming_to_diffusers` (every key accounted for); the gumbel quantizer's projection is kept
beside it. This module needs the optional ``[vqgan]`` extra (diffusers), imported lazily.
"""

from __future__ import annotations

import logging
import pickle
import re
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import yaml
from torch import Tensor

from pytti_engine.checks import check_shape
from pytti_engine.errors import ModelLoadError
from pytti_engine.image_params.base import ImageConfig
from pytti_engine.image_params.ema import TensorEMA
from pytti_engine.io import atomic_write_bytes, atomic_write_text
from pytti_engine.losses import replace_grad
from pytti_engine.vqgan_files import VQGANConfig, VQGANFiles, read_vqgan_config, vqgan_identity

logger = logging.getLogger(__name__)

INSTALL_HINT = "install the VQGAN extra: pip install 'pytti-flow[vqgan]' (it brings diffusers)"
STAND_IN_MARK = "pytti_stand_in"
"""Top-level key of a stand-in checkpoint (random weights written by :func:`write_vqgan_stand_in`)."""


# ---- taming -> diffusers ---------------------------------------------------------------------------

_ATTN_NAMES = {"norm": "group_norm", "q": "to_q", "k": "to_k", "v": "to_v", "proj_out": "to_out.0"}
_LEVEL = re.compile(r"^(encoder\.down|decoder\.up)\.(\d+)\.(block|attn|downsample|upsample)\.(.*)$")
_MID = {"block_1": "resnets.0", "attn_1": "attentions.0", "block_2": "resnets.1"}


@dataclass
class ConvertedState:
    """A taming autoencoder state dict in diffusers' names.

    Attributes:
        state: keys and tensors for ``diffusers.VQModel.load_state_dict``.
        proj: the gumbel quantizer's ``proj`` (``weight``, ``bias``), empty for a plain VQ model.
        used: every checkpoint key that went into ``state`` or ``proj``.
        ignored: checkpoint keys that are not part of the autoencoder (``loss.*``, a transformer's).
    """

    state: dict[str, Tensor] = field(default_factory=dict)
    proj: dict[str, Tensor] = field(default_factory=dict)
    used: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)


def diffusers_key(key: str, levels: int) -> str:
    """The diffusers ``VQModel`` name of a taming encoder/decoder/quantizer key (without prefix).

    Args:
        key: e.g. ``decoder.up.4.attn.0.q.weight``.
        levels: ``len(ch_mult)``; taming stores the decoder's ``up`` list lowest resolution last.

    Returns:
        e.g. ``decoder.up_blocks.0.attentions.0.to_q.weight``.

    Raises:
        KeyError: a key that has no counterpart.
    """
    if key in ("quantize.embedding.weight", "quantize.embed.weight"):
        return "quantize.embedding.weight"
    if key.startswith(("quant_conv.", "post_quant_conv.")):
        return key
    part, _, rest = key.partition(".")
    if part not in ("encoder", "decoder"):
        raise KeyError(key)
    match = _LEVEL.match(key)
    if match:
        where, level, kind, tail = match.groups()
        index = int(level) if where == "encoder.down" else levels - 1 - int(level)
        block = "down_blocks" if where == "encoder.down" else "up_blocks"
        head = f"{part}.{block}.{index}"
        if kind in ("downsample", "upsample"):
            return f"{head}.{kind}rs.0.{tail}"
        sub, _, leaf = tail.partition(".")
        group = "resnets" if kind == "block" else "attentions"
        return _leaf(f"{head}.{group}.{sub}", leaf, attention=kind == "attn")
    if rest.startswith("mid."):
        name, _, leaf = rest[len("mid.") :].partition(".")
        if name not in _MID:
            raise KeyError(key)
        return _leaf(f"{part}.mid_block.{_MID[name]}", leaf, attention=name == "attn_1")
    if rest.startswith("norm_out."):
        return f"{part}.conv_norm_out.{rest[len('norm_out.') :]}"
    if rest.startswith(("conv_in.", "conv_out.")):
        return key
    raise KeyError(key)


def _leaf(head: str, leaf: str, *, attention: bool) -> str:
    module, _, param = leaf.partition(".")
    if attention:
        if module not in _ATTN_NAMES:
            raise KeyError(f"{head}.{leaf}")
        return f"{head}.{_ATTN_NAMES[module]}.{param}"
    if module == "nin_shortcut":
        module = "conv_shortcut"
    return f"{head}.{module}.{param}"


def taming_to_diffusers(state: Mapping[str, Tensor], config: VQGANConfig) -> ConvertedState:
    """Rename a taming checkpoint's autoencoder weights to diffusers' ``VQModel`` names.

    Keys outside the autoencoder (``loss.*``, and for a Net2NetTransformer everything outside
    ``first_stage_model.``) are ignored; every other key must have a counterpart.

    Args:
        state: the checkpoint's ``state_dict``.
        config: the model config (its ``prefix``, ``kind`` and ``ch_mult``).

    Returns:
        The renamed state, the gumbel projection, and which keys were used and ignored.

    Raises:
        ModelLoadError: a key of the autoencoder this mapping does not know.
    """
    out = ConvertedState()
    levels = len(config.ddconfig["ch_mult"])
    for key, value in state.items():
        if not key.startswith(config.prefix):
            out.ignored.append(key)
            continue
        local = key[len(config.prefix) :]
        if local.startswith("loss."):
            out.ignored.append(key)
            continue
        if config.kind == "gumbel" and local.startswith("quantize.proj."):
            out.proj[local[len("quantize.proj.") :]] = value
            out.used.append(key)
            continue
        try:
            name = diffusers_key(local, levels)
        except KeyError:
            raise ModelLoadError(
                f"VQGAN checkpoint: unexpected key {key!r} (not a taming VQGAN layout)"
            ) from None
        if ".attentions." in name and value.ndim == 4 and not name.endswith("group_norm.weight"):
            value = value[:, :, 0, 0]  # taming's attention uses 1x1 convs, diffusers' linears
        out.state[name] = value
        out.used.append(key)
    return out


def _block_types(config: VQGANConfig) -> tuple[tuple[str, ...], tuple[str, ...]]:
    dd = config.ddconfig
    levels = len(dd["ch_mult"])
    attn = [dd["resolution"] // 2**i in dd["attn_resolutions"] for i in range(levels)]
    down = tuple("AttnDownEncoderBlock2D" if a else "DownEncoderBlock2D" for a in attn)
    up = tuple("AttnUpDecoderBlock2D" if a else "UpDecoderBlock2D" for a in reversed(attn))
    return down, up


def build_network(config: VQGANConfig, *, meta: bool = False) -> Any:
    """An (untrained) diffusers ``VQModel`` with ``config``'s architecture.

    Args:
        config: the taming model config.
        meta: build on the meta device (no memory, no init: for loading with ``assign=True``).

    Raises:
        ModelLoadError: diffusers is not installed.
    """
    try:
        from diffusers import VQModel
    except ImportError as e:
        raise ModelLoadError(f"image_model: vqgan needs diffusers; {INSTALL_HINT}") from e
    dd = config.ddconfig
    down, up = _block_types(config)
    kwargs = dict(
        in_channels=int(dd["in_channels"]),
        out_channels=int(dd["out_ch"]),
        down_block_types=down,
        up_block_types=up,
        block_out_channels=tuple(int(dd["ch"]) * int(m) for m in dd["ch_mult"]),
        layers_per_block=int(dd["num_res_blocks"]),
        latent_channels=int(dd["z_channels"]),
        sample_size=int(dd["resolution"]),
        num_vq_embeddings=config.n_embed,
        vq_embed_dim=config.embed_dim,
        norm_num_groups=32,
    )
    if meta:
        with torch.device("meta"):
            return VQModel(**kwargs)
    return VQModel(**kwargs)


# ---- reading checkpoints without running their code -----------------------------------------------

_TENSOR_GLOBALS = {
    ("torch._utils", "_rebuild_tensor_v2"),
    ("torch._utils", "_rebuild_tensor"),
    ("torch._utils", "_rebuild_parameter"),
    ("torch._utils", "_rebuild_parameter_with_state"),
    ("torch._tensor", "_rebuild_from_type_v2"),
    ("torch", "Size"),
    ("torch", "Tensor"),
    ("torch.nn.parameter", "Parameter"),
    ("collections", "OrderedDict"),
}


class _Inert:
    """Stands in for any class or function a checkpoint's pickle names that is not tensor data.

    Calling it, or restoring state into it, runs no code from the checkpoint.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args = args

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __call__(self, *args: Any, **kwargs: Any) -> _Inert:
        return _Inert(*args)


class _InertUnpickler(pickle.Unpickler):
    """Builds tensors and plain containers; every other global becomes :class:`_Inert`."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _TENSOR_GLOBALS:
            return super().find_class(module, name)
        if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
            return getattr(torch, name)
        return type(name, (_Inert,), {"__module__": "pytti_inert." + module})


def _inert_load(file: Any, **kwargs: Any) -> Any:
    return _InertUnpickler(file, **kwargs).load()


_INERT_PICKLE = types.ModuleType("pytti_inert_pickle")
_INERT_PICKLE.Unpickler = _InertUnpickler  # type: ignore[attr-defined]
_INERT_PICKLE.load = _inert_load  # type: ignore[attr-defined]


def read_state_dict(path: Path) -> dict[str, Tensor]:
    """The ``state_dict`` of a Lightning ``.ckpt`` (or a bare state dict), memory-mapped where possible.

    Lightning checkpoints of taming's era pickle Lightning classes (callback states keyed by class)
    that ``weights_only`` refuses and that need pytorch-lightning to unpickle. Those are read with an
    unpickler that rebuilds tensors and turns every other class into an inert placeholder, so no code
    from the file runs and pytorch-lightning is not needed.

    Raises:
        ModelLoadError: not a readable checkpoint, or no ``state_dict`` in it.
    """
    payload: Any = None
    errors: list[str] = []
    for options in ({"weights_only": True}, {"weights_only": False, "pickle_module": _INERT_PICKLE}):
        for mmap in (True, False):
            try:
                payload = torch.load(path, map_location="cpu", mmap=mmap, **options)
                break
            except Exception as e:  # noqa: BLE001 - try the next way; all failures are reported below
                errors.append(f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
        if payload is not None:
            break
    if payload is None:
        raise ModelLoadError(f"VQGAN checkpoint {path}: cannot read it ({errors[-1]})")
    state = payload.get("state_dict", payload) if isinstance(payload, dict) else None
    if not isinstance(state, Mapping) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ModelLoadError(f"VQGAN checkpoint {path}: no state_dict of tensors in it")
    return dict(state)


def is_stand_in(path: Path) -> bool:
    """Whether a checkpoint was written by :func:`write_vqgan_stand_in` (random weights)."""
    try:
        payload = torch.load(path, map_location="cpu", mmap=True, weights_only=True)
    except Exception:  # noqa: BLE001 - a real checkpoint that weights_only refuses is not a stand-in
        return False
    return isinstance(payload, dict) and bool(payload.get(STAND_IN_MARK))


# ---- the loaded model ---------------------------------------------------------------------------------


@dataclass(eq=False)
class VQGANModel:
    """A frozen VQGAN: encoder, decoder and codebook.

    Attributes:
        files: where it was loaded from.
        config: its taming config.
        net: the diffusers ``VQModel`` (eval mode, no gradients).
        proj: the gumbel quantizer's 1x1 convolution (latent -> code logits), or ``None``.
        identity: what identifies the weights (name, checkpoint sha256, architecture sha256).
        stand_in: the weights are a random stand-in.
    """

    files: VQGANFiles
    config: VQGANConfig
    net: Any  # diffusers.VQModel (a torch.nn.Module)
    proj: torch.nn.Conv2d | None
    identity: dict[str, Any]
    stand_in: bool = False

    @property
    def codebook(self) -> Tensor:
        """(n_embed, embed_dim) the codebook vectors."""
        weight: Tensor = self.net.quantize.embedding.weight
        return weight

    @property
    def factor(self) -> int:
        """Pixels per latent cell."""
        return self.config.factor

    @property
    def device(self) -> torch.device:
        """Where the weights are."""
        return self.codebook.device

    @property
    def default_learning_rate(self) -> float:
        """PyTTI's: 0.1, or 0.15 for a gumbel model."""
        return self.config.default_learning_rate

    def nearest(self, z: Tensor) -> Tensor:
        """Each latent vector's nearest codebook vector (squared distance), no gradient.

        Args:
            z: :math:`(B, E, h, w)`.

        Returns:
            :math:`(B, E, h, w)` codebook vectors.
        """
        check_shape(z, f"B {self.config.embed_dim} h w")
        b, e, h, w = z.shape
        flat = z.detach().permute(0, 2, 3, 1).reshape(-1, e)  # (B·h·w, E)
        book = self.codebook.to(flat.dtype)
        distance = flat.square().sum(1, keepdim=True) + book.square().sum(1) - 2 * flat @ book.T
        codes = book.index_select(0, distance.argmin(1))
        return codes.reshape(b, h, w, e).permute(0, 3, 1, 2).contiguous()

    def quantize(self, z: Tensor) -> Tensor:
        """Nearest codebook vectors forward, gradient straight through to ``z`` (PyTTI's vector_quantize)."""
        return replace_grad(self.nearest(z), z)

    def decode(self, z_q: Tensor) -> Tensor:
        """Decode quantized latents to pictures.

        Args:
            z_q: :math:`(B, E, h, w)` quantized latents.

        Returns:
            :math:`(B, 3, h·f, w·f)` in [0, 1] (clamped; the gradient passes the clamp).
        """
        out = self.net.decoder(self.net.post_quant_conv(z_q))
        pixels = (out + 1) / 2
        return replace_grad(pixels.clamp(0, 1), pixels)

    @torch.no_grad()
    def encode(self, pixels: Tensor) -> Tensor:
        """Encode pictures to quantized latents (PyTTI's ``vqgan.encode(2x - 1)``).

        A gumbel model takes the most likely code of each cell (taming samples one at random).

        Args:
            pixels: :math:`(B, 3, H, W)` in [0, 1], ``H`` and ``W`` multiples of the factor.

        Returns:
            :math:`(B, E, H/f, W/f)`.
        """
        check_shape(pixels, "B 3 H W")
        h = self.net.quant_conv(self.net.encoder(pixels.to(self.device) * 2 - 1))
        if self.proj is None:
            return self.nearest(h)
        codes = self.proj(h).argmax(dim=1)  # (B, h, w)
        return self.codebook[codes].permute(0, 3, 1, 2).contiguous()

    def random_latent(self, height: int, width: int, generator: torch.Generator) -> Tensor:
        """A grid of random codebook entries (PyTTI's ``rand_latent``), drawn on the CPU from ``generator``.

        Returns:
            :math:`(1, E, height/f, width/f)` on the model's device.
        """
        h, w = height // self.factor, width // self.factor
        codes = torch.randint(self.config.n_embed, (h * w,), generator=generator)
        z = self.codebook.detach().cpu().float().index_select(0, codes)  # (h·w, E)
        return z.reshape(1, h, w, -1).permute(0, 3, 1, 2).contiguous().to(self.device)

    def record(self) -> dict[str, Any]:
        """What the manifest says about the model."""
        return {
            **self.identity,
            "kind": self.config.kind,
            "factor": self.factor,
            "codebook": [self.config.n_embed, self.config.embed_dim],
            "config": str(self.files.config),
            "checkpoint": str(self.files.checkpoint),
            "found_in": self.files.source,
            "stand_in": self.stand_in,
        }


def load_vqgan(files: VQGANFiles, device: torch.device | str = "cpu") -> VQGANModel:
    """Load a taming-transformers VQGAN (any of PyTTI's five, or another taming checkpoint).

    Args:
        files: the ``.yaml`` and ``.ckpt`` (:func:`pytti_engine.vqgan_files.find_vqgan_files`).
        device: where to put it.

    Returns:
        The frozen model.

    Raises:
        ModelLoadError: diffusers missing, unreadable files, or weights that do not fit the config.
    """
    config = read_vqgan_config(files.config)
    converted = taming_to_diffusers(read_state_dict(files.checkpoint), config)
    net = build_network(config, meta=True)
    state = {k: v.float() for k, v in converted.state.items()}
    try:
        result = net.load_state_dict(state, strict=False, assign=True)
    except RuntimeError as e:  # shapes that do not fit the config
        detail = " ".join(line.strip() for line in str(e).splitlines()[1:3])
        raise ModelLoadError(
            f"VQGAN checkpoint {files.checkpoint} does not fit {files.config}: {detail}"
        ) from e
    if result.missing_keys or result.unexpected_keys:
        raise ModelLoadError(
            f"VQGAN checkpoint {files.checkpoint} does not fit {files.config}: "
            f"missing {result.missing_keys[:3]}, unexpected {result.unexpected_keys[:3]}"
        )
    proj = None
    if config.kind == "gumbel":
        if set(converted.proj) != {"weight", "bias"}:
            raise ModelLoadError(f"VQGAN checkpoint {files.checkpoint}: a gumbel model without quantize.proj")
        weight = converted.proj["weight"].float()
        proj = torch.nn.Conv2d(weight.shape[1], weight.shape[0], 1)
        proj.load_state_dict({"weight": weight, "bias": converted.proj["bias"].float()})
    net.eval().requires_grad_(False).to(device)
    if proj is not None:
        proj.eval().requires_grad_(False).to(device)
    stand_in = is_stand_in(files.checkpoint)
    if stand_in:
        logger.warning("VQGAN %s is a random-weight stand-in (%s)", files.name, files.checkpoint)
    return VQGANModel(files, config, net, proj, vqgan_identity(files), stand_in)


# ---- the image model ----------------------------------------------------------------------------------


class VQGANImage:
    """The VQGAN image model.

    Args:
        config: image config (``width``/``height`` multiples of the model's factor, ``ema_decay``,
            ``vqgan_warp``).
        model: the loaded VQGAN.
        generator: draws the random start (codebook entries).
        init: a start picture :math:`(1, 3, H, W)` in [0, 1], or ``None`` for a random start.
    """

    kind = "vqgan"

    def __init__(
        self,
        config: ImageConfig,
        model: VQGANModel,
        generator: torch.Generator,
        init: Tensor | None = None,
    ) -> None:
        f = model.factor
        if config.width % f or config.height % f:
            raise ValueError(
                f"width {config.width} and height {config.height} must be multiples of the VQGAN's factor {f}"
            )
        self.config = config
        self.model = model
        self.default_learning_rate = model.default_learning_rate
        latent = model.random_latent(config.height, config.width, generator)
        self.z = latent.requires_grad_(True)
        self.ema = None if config.ema_decay is None else TensorEMA([self.z], config.ema_decay)
        if init is not None:
            self.encode(init)

    @property
    def height(self) -> int:
        """Output height in pixels."""
        return self.config.height

    @property
    def width(self) -> int:
        """Output width in pixels."""
        return self.config.width

    def parameters(self) -> list[Tensor]:
        """``[z]``."""
        return [self.z]

    def spatial_parameters(self) -> list[Tensor]:
        """``[z]`` (1, E, H/f, W/f)."""
        return [self.z]

    def quantized_latent(self) -> Tensor:
        """(1, E, h, w) nearest codebook vectors of ``z``, gradient straight through (LatentLoss)."""
        return self.model.quantize(self.z)

    def decode(self) -> Tensor:
        """(1, 3, H, W) in [0, 1], differentiable w.r.t. ``z``."""
        return self.model.decode(self.quantized_latent())

    def _output_latent(self) -> Tensor:
        return self.z.detach() if self.ema is None else self.ema.average([self.z])[0]

    @torch.no_grad()
    def decode_output(self) -> Tensor:
        """(1, 3, H, W): the EMA latent decoded (the raw latent without EMA)."""
        return self.model.decode(self.model.nearest(self._output_latent())).clone()

    @torch.no_grad()
    def encode(self, pixels: Tensor) -> None:
        """Set ``z`` to the encoded (quantized) latent of a (1, 3, H, W) picture; resets the EMA."""
        check_shape(pixels, f"1 3 {self.height} {self.width}")
        self.z.copy_(self.model.encode(pixels.clamp(0, 1)).to(self.z))
        if self.ema is not None:
            self.ema.reset_()

    @torch.no_grad()
    def encode_region(self, pixels: Tensor, mask: Tensor) -> None:
        """Re-encode only the latent cells mostly inside ``mask`` (video occlusions); the EMA elsewhere survives.

        The blend ``decode()·(1 - mask) + pixels·mask`` is encoded (so a cell on the mask's edge sees
        consistent content), and its latent replaces ``z`` in the cells whose area is at least half
        masked; their EMA restarts from the new latent.

        Args:
            pixels: (1, 3, H, W) picture in [0, 1].
            mask: (1, 1, H, W) in [0, 1].
        """
        check_shape(pixels, f"1 3 {self.height} {self.width}")
        check_shape(mask, f"1 1 {self.height} {self.width}")
        mask = mask.to(self.z)
        blend = torch.lerp(self.decode().detach(), pixels.to(self.z).clamp(0, 1), mask)
        fresh = self.model.encode(blend).to(self.z)
        cells = (F.adaptive_avg_pool2d(mask, (int(self.z.shape[-2]), int(self.z.shape[-1]))) >= 0.5).to(
            self.z
        )
        self.z.copy_(torch.lerp(self.z, fresh, cells))
        if self.ema is not None:
            self.ema.blend_(0, fresh, cells)

    @torch.no_grad()
    def encode_target(self, pixels: Tensor) -> Tensor:
        """(1, E, h, w) the quantized latent of a picture, leaving ``z`` alone (LatentLoss targets)."""
        return self.model.encode(pixels.clamp(0, 1)).to(self.z)

    def regularization(self) -> Tensor | None:
        """None: VQGAN has no losses of its own."""
        return None

    def project_(self) -> None:
        """Nothing: ``z`` is unconstrained."""

    def update_average_(self) -> None:
        """Advance the EMA (no-op without one)."""
        if self.ema is not None:
            self.ema.update_([self.z])

    @torch.no_grad()
    def apply_warp(self, warp: Callable[[Tensor], Tensor]) -> None:
        """Move the image by ``warp``.

        ``vqgan_warp: pixels`` (PyTTI): decode the output latent, warp the picture, re-encode it, reset
        the EMA. ``latent``: warp ``z`` and its EMA on the latent grid (``warp`` must accept any grid
        size, as the motion module's warps do).
        """
        if self.config.vqgan_warp == "latent":
            self.z.copy_(warp(self.z))
            if self.ema is not None:
                self.ema.warp_([0], warp)
            return
        self.encode(warp(self.decode_output()))

    def state_dict(self) -> dict[str, Tensor]:
        """``{"z": (1, E, h, w)}`` plus the EMA buffers (CPU copies)."""
        out = {"z": self.z.detach().cpu().clone()}
        if self.ema is not None:
            out.update(self.ema.state_dict())
        return out

    @torch.no_grad()
    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        """Restore from :meth:`state_dict`."""
        z = state["z"]
        if z.shape != self.z.shape:
            raise ValueError(f"checkpoint latent is {tuple(z.shape)}, expected {tuple(self.z.shape)}")
        self.z.copy_(z.to(self.z.device, self.z.dtype))
        if self.ema is not None:
            self.ema.load_state_dict(state)


def latent_loss(image: VQGANImage, decoded: Tensor, target_latent: Tensor, target_pixels: Tensor) -> Tensor:
    """PyTTI's ``LatentLoss``: ``MSE(quantized latent, target latent) / 2 + MSE(pixels, target) / 10``.

    Args:
        image: the VQGAN image (its quantized latent, gradient straight through).
        decoded: :math:`(1, 3, H, W)` the decoded image.
        target_latent: :math:`(1, E, h, w)` the target's quantized latent.
        target_pixels: :math:`(1, 3, H, W)` the target picture.

    Returns:
        Scalar.
    """
    latent = F.mse_loss(image.quantized_latent(), target_latent)
    return latent / 2 + F.mse_loss(decoded, target_pixels) / 10


# ---- stand-in -------------------------------------------------------------------------------------------

_STAND_IN_DDCONFIG = {
    "double_z": False,
    "z_channels": 32,
    "resolution": 256,
    "in_channels": 3,
    "out_ch": 3,
    "ch": 32,
    "num_res_blocks": 1,
    "dropout": 0.0,
}


def stand_in_config(kind: str = "vq") -> dict[str, Any]:
    """A tiny taming config: ``vq`` (f16 like imagenet), ``gumbel`` (f8 like openimages) or ``net2net``
    (f16 first stage of a Net2NetTransformer, like sflckr/coco)."""
    levels = 4 if kind == "gumbel" else 5
    ddconfig = {**_STAND_IN_DDCONFIG, "ch_mult": [1] * levels, "attn_resolutions": [256 // 2 ** (levels - 1)]}
    loss = {"target": "taming.modules.losses.vqperceptual.VQLPIPSWithDiscriminator", "params": {}}
    if kind == "gumbel":
        return {
            "model": {
                "target": "taming.models.vqgan.GumbelVQ",
                "params": {
                    "n_embed": 64,
                    "embed_dim": 32,
                    "kl_weight": 1e-8,
                    "ddconfig": ddconfig,
                    "lossconfig": loss,
                },
            }
        }
    first = {
        "target": "taming.models.vqgan.VQModel",
        "params": {"n_embed": 64, "embed_dim": 32, "ddconfig": ddconfig, "lossconfig": loss},
    }
    if kind == "net2net":
        return {
            "model": {
                "target": "taming.models.cond_transformer.Net2NetTransformer",
                "params": {
                    "first_stage_config": first,
                    "transformer_config": {"target": "taming.modules.transformer.mingpt.GPT", "params": {}},
                },
            }
        }
    return {"model": first}


def taming_state_dict(config: VQGANConfig, generator: torch.Generator) -> dict[str, Tensor]:
    """Random weights in taming's checkpoint layout for ``config`` (keys from diffusers' model, renamed
    back), including a few ``loss.*`` keys as real checkpoints have."""
    net = build_network(config)
    levels = len(config.ddconfig["ch_mult"])
    reverse = {}
    for key in _taming_keys(config):
        reverse[diffusers_key(key, levels)] = key
    state: dict[str, Tensor] = {}
    for name, tensor in net.state_dict().items():
        key = reverse[name]
        value = torch.randn(tensor.shape, generator=generator) * 0.05
        if ".attn" in key and value.ndim == 2:
            value = value[:, :, None, None]
        if key.endswith(("norm1.weight", "norm2.weight", "norm.weight", "norm_out.weight")):
            value = 1 + value
        if key == "quantize.embedding.weight" and config.kind == "gumbel":
            key = "quantize.embed.weight"
        state[config.prefix + key] = value
    if config.kind == "gumbel":
        e, n = config.embed_dim, config.n_embed
        state[config.prefix + "quantize.proj.weight"] = torch.randn(n, e, 1, 1, generator=generator) * 0.05
        state[config.prefix + "quantize.proj.bias"] = torch.zeros(n)
    state[config.prefix + "loss.discriminator.main.0.weight"] = torch.randn(8, 3, 4, 4, generator=generator)
    if config.prefix:
        state["transformer.tok_emb.weight"] = torch.randn(config.n_embed, 8, generator=generator)
    return state


def _taming_keys(config: VQGANConfig) -> list[str]:
    """Every taming key of ``config``'s autoencoder (structure of taming's Encoder/Decoder)."""
    dd = config.ddconfig
    mult = [1, *dd["ch_mult"]]
    levels, blocks, ch = len(dd["ch_mult"]), int(dd["num_res_blocks"]), int(dd["ch"])
    attn = [dd["resolution"] // 2**i in dd["attn_resolutions"] for i in range(levels)]
    keys = [
        "encoder.conv_in",
        "encoder.conv_out",
        "decoder.conv_in",
        "decoder.conv_out",
        "quant_conv",
        "post_quant_conv",
    ]
    keys += ["encoder.norm_out", "decoder.norm_out"]
    resnet = ("norm1", "conv1", "norm2", "conv2")
    attention = ("norm", "q", "k", "v", "proj_out")
    for part in ("encoder", "decoder"):
        keys += [f"{part}.mid.block_{n}.{m}" for n in (1, 2) for m in resnet]
        keys += [f"{part}.mid.attn_1.{m}" for m in attention]
    for i in range(levels):
        c_in, c_out = ch * mult[i], ch * mult[i + 1]
        for j in range(blocks):
            keys += [f"encoder.down.{i}.block.{j}.{m}" for m in resnet]
            if (c_in if j == 0 else c_out) != c_out:
                keys.append(f"encoder.down.{i}.block.{j}.nin_shortcut")
            if attn[i]:
                keys += [f"encoder.down.{i}.attn.{j}.{m}" for m in attention]
        if i != levels - 1:
            keys.append(f"encoder.down.{i}.downsample.conv")
        c_out_up = ch * dd["ch_mult"][i]
        c_prev = ch * dd["ch_mult"][i + 1] if i + 1 < levels else ch * dd["ch_mult"][-1]
        for j in range(blocks + 1):
            keys += [f"decoder.up.{i}.block.{j}.{m}" for m in resnet]
            if j == 0 and c_prev != c_out_up:
                keys.append(f"decoder.up.{i}.block.{j}.nin_shortcut")
            if attn[i]:
                keys += [f"decoder.up.{i}.attn.{j}.{m}" for m in attention]
        if i != 0:
            keys.append(f"decoder.up.{i}.upsample.conv")
    keys = [f"{k}.{p}" for k in keys for p in ("weight", "bias")]
    return [*keys, "quantize.embedding.weight"]


def write_vqgan_stand_in(
    directory: str | Path, *, name: str = "imagenet", kind: str = "vq", seed: int = 0
) -> tuple[Path, Path]:
    """Write a tiny random-weight VQGAN in taming's layout: ``DIR/vqgan/<name>.yaml`` and ``.ckpt``.

    The checkpoint is a Lightning-style dict (``state_dict``, ``epoch``, ``global_step``, ...) marked
    with :data:`STAND_IN_MARK`, so a scene with ``vqgan_model: <name>`` and ``models_dir: DIR`` loads it
    through exactly the path a real checkpoint takes.

    Args:
        directory: the models folder (the files go into its ``vqgan/`` subfolder).
        name: file stem (``imagenet``; ``openimages`` for a gumbel stand-in).
        kind: ``vq``, ``gumbel`` or ``net2net`` (see :func:`stand_in_config`).
        seed: seed of the random weights.

    Returns:
        ``(config_path, checkpoint_path)``.
    """
    folder = Path(directory) / "vqgan"
    folder.mkdir(parents=True, exist_ok=True)
    config_path, ckpt_path = folder / f"{name}.yaml", folder / f"{name}.ckpt"
    text = "# A tiny random-weight VQGAN stand-in written by `pytti models stand-in --vqgan` (not trained).\n"
    atomic_write_text(config_path, text + yaml.safe_dump(stand_in_config(kind), sort_keys=False))
    config = read_vqgan_config(config_path)
    state = taming_state_dict(config, torch.Generator().manual_seed(seed))
    payload = {
        "epoch": 0,
        "global_step": 0,
        "pytorch-lightning_version": "1.0.8",
        "state_dict": state,
        STAND_IN_MARK: True,
    }
    import io

    buffer = io.BytesIO()
    torch.save(payload, buffer)
    atomic_write_bytes(ckpt_path, buffer.getvalue())
    return config_path, ckpt_path
