"""Save and load a frame's :class:`RenderState` atomically, with what is needed to verify it."""

from __future__ import annotations

import io
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from pytti_engine import engine_version
from pytti_engine.errors import PyttiError
from pytti_engine.image_params import image_from_state
from pytti_engine.io import atomic_write_bytes
from pytti_engine.state import RenderState, make_optimizer

if TYPE_CHECKING:
    from pytti_engine.image_params.vqgan import VQGANModel

CHECKPOINT_FORMAT = 1


class CheckpointError(PyttiError):
    """A checkpoint is missing, truncated, corrupted or from an incompatible engine."""


@dataclass(frozen=True)
class CheckpointMeta:
    """What a checkpoint says about itself (small, JSON-friendly).

    Attributes:
        frame: the frame this state is the result of.
        step: optimizer steps taken up to and including this frame.
        key: the frame key (hash of everything that determines the frame's pixels).
        png_sha256: sha256 of the frame's PNG, to verify the pair.
    """

    frame: int
    step: int
    key: str
    png_sha256: str


def checkpoint_bytes(state: RenderState, meta: CheckpointMeta) -> bytes:
    """Serialize a state and its metadata with ``torch.save`` into bytes."""
    payload: dict[str, Any] = {
        "format": CHECKPOINT_FORMAT,
        "engine_version": engine_version(),
        "image_kind": state.image.kind,
        "image_config": state.image.config.to_dict(),
        "image": state.image.state_dict(),
        "optimizer": state.optimizer.state_dict(),
        "frame": meta.frame,
        "step": meta.step,
        "key": meta.key,
        "png_sha256": meta.png_sha256,
        "depth_scale": None if state.depth_scale is None else list(state.depth_scale),
        "step_generator": generator_record(state.step_generator),
    }
    buf = io.BytesIO()
    torch.save(payload, buf)
    return buf.getvalue()


def save_checkpoint(path: Path, state: RenderState, meta: CheckpointMeta) -> None:
    """Write the checkpoint atomically (temp file + fsync + rename)."""
    atomic_write_bytes(path, checkpoint_bytes(state, meta))


def read_checkpoint(path: Path) -> dict[str, Any]:
    """Load a checkpoint's raw payload (tensors on the CPU).

    Raises:
        CheckpointError: missing, unreadable, or not a checkpoint of this format.
    """
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError as e:
        raise CheckpointError(f"{path}: checkpoint not found") from e
    except Exception as e:
        raise CheckpointError(f"{path}: unreadable checkpoint ({type(e).__name__}: {e})") from e
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: not a pytti checkpoint of format {CHECKPOINT_FORMAT}")
    return payload


def load_checkpoint(
    path: Path, *, learning_rate: float, device: torch.device, vqgan: VQGANModel | None = None
) -> tuple[RenderState, CheckpointMeta]:
    """Rebuild the :class:`RenderState` saved in ``path`` on ``device``.

    Args:
        path: the checkpoint file.
        learning_rate: the scene's learning rate (a changed rate applies from the next step on).
        device: where to put the tensors.
        vqgan: the loaded VQGAN, for a checkpoint of a vqgan render.

    Returns:
        The state and its metadata.
    """
    p = read_checkpoint(path)
    try:
        image = image_from_state(p["image_kind"], p.get("image_config"), p["image"], device, vqgan)
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: cannot rebuild image model {p.get('image_kind')!r}: {e}") from e
    optimizer = make_optimizer(image, learning_rate)
    optimizer.load_state_dict(_interned_keys(p["optimizer"]))
    for group in optimizer.param_groups:
        group["lr"] = learning_rate
    meta = CheckpointMeta(
        frame=int(p["frame"]), step=int(p["step"]), key=str(p["key"]), png_sha256=str(p["png_sha256"])
    )
    scale = p.get("depth_scale")
    depth_scale = None if scale is None else (float(scale[0]), float(scale[1]))
    state = RenderState(
        image=image,
        optimizer=optimizer,
        step=meta.step,
        frame=meta.frame,
        depth_scale=depth_scale,
        step_generator=restore_generator(p.get("step_generator"), device),
    )
    return state, meta


def generator_record(generator: torch.Generator | None) -> dict[str, Any] | None:
    """A generator's device type and state (a CPU byte tensor) for the checkpoint; ``None`` for none."""
    if generator is None:
        return None
    return {"device": generator.device.type, "state": generator.get_state()}


def restore_generator(record: Any, device: torch.device) -> torch.Generator | None:
    """The generator of :func:`generator_record` on ``device``, in its saved state.

    ``None`` when there is none (older checkpoints) or it was saved on another kind of device: a CPU
    generator's state means nothing to a CUDA one, and the next frame seeds its own anyway.
    """
    if not isinstance(record, dict) or record.get("device") != device.type:
        return None
    generator = torch.Generator(device=device)
    generator.set_state(record["state"])
    return generator


def _interned_keys(value: Any) -> Any:
    """``value`` with every string dict key interned, as an optimizer built in memory has them.

    ``torch.save`` pickles a string that occurs twice as a back-reference only when it is the *same*
    object (``"step"`` is both a payload key and an Adam state key): without this, a state restored
    from a checkpoint would save to other bytes than the same state kept in memory.
    """
    if isinstance(value, dict):
        return {sys.intern(k) if isinstance(k, str) else k: _interned_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_interned_keys(v) for v in value]
    return value
