"""The run directory: the durable source of truth of a render (design.md §4).

```
RUN_DIR/
  scene.yaml            the scene as given
  run.json              how it was invoked (scene path, overrides, device)
  plan.json             every resolved value for every frame
  frames/000001.png …
  checkpoints/000001.pt …
  manifest.json         versions, models, per-frame key / sha256 / loss / timing
  <stem>.mp4
```

Frame N is *done* when its checkpoint exists, records key N, and the sha256 it records matches
``frames/N.png``. The PNG is written first and the checkpoint last, both atomically, so a killed
process never leaves a frame that looks done.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytti_engine import __version__
from pytti_engine.checkpoints import CheckpointError, CheckpointMeta, read_meta, save_checkpoint
from pytti_engine.errors import OutputError
from pytti_engine.io import atomic_write_bytes, png_bytes, sha256_file
from pytti_engine.render import FrameResult


@dataclass(frozen=True)
class RunPaths:
    """File names inside one run directory."""

    root: Path

    @property
    def frames_dir(self) -> Path:
        """``frames/``."""
        return self.root / "frames"

    @property
    def checkpoints_dir(self) -> Path:
        """``checkpoints/``."""
        return self.root / "checkpoints"

    @property
    def scene_yaml(self) -> Path:
        """The scene as given."""
        return self.root / "scene.yaml"

    @property
    def plan_json(self) -> Path:
        """The resolved plan."""
        return self.root / "plan.json"

    @property
    def run_json(self) -> Path:
        """How the run was invoked."""
        return self.root / "run.json"

    @property
    def manifest_json(self) -> Path:
        """Provenance and per-frame records."""
        return self.root / "manifest.json"

    def frame_png(self, index: int) -> Path:
        """``frames/NNNNNN.png`` (1-based)."""
        return self.frames_dir / f"{index:06d}.png"

    def checkpoint(self, index: int) -> Path:
        """``checkpoints/NNNNNN.pt`` (1-based)."""
        return self.checkpoints_dir / f"{index:06d}.pt"

    def video(self, stem: str) -> Path:
        """``<stem>.mp4``."""
        return self.root / f"{stem}.mp4"


def default_run_dir(scene_path: Path) -> Path:
    """``renders/<scene stem>`` under the current directory."""
    return Path("renders") / scene_path.stem


def ensure_writable(root: Path) -> None:
    """Create ``root`` if needed and prove a file can be written there.

    Raises:
        OutputError: the directory cannot be created or written.
    """
    try:
        root.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-probe.", dir=root)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise OutputError(f"output directory {root} is not writable: {e.strerror or e}") from e


def frame_keys(fingerprint: Mapping[str, Any], frames: Iterable[Mapping[str, Any]]) -> list[str]:
    """Chain of frame keys: key N = sha256(engine version, settings, frame N's values, key N-1).

    Args:
        fingerprint: JSON-friendly settings that affect pixels (render settings, perceptor specs).
        frames: each frame's resolved values (``FramePlan.to_dict()``).

    Returns:
        One hex key per frame, in order.
    """
    base = json.dumps({"engine": __version__, "settings": fingerprint}, sort_keys=True, default=str)
    keys: list[str] = []
    prev = hashlib.sha256(base.encode()).hexdigest()
    for frame in frames:
        blob = json.dumps({"prev": prev, "frame": frame}, sort_keys=True, default=str)
        prev = hashlib.sha256(blob.encode()).hexdigest()
        keys.append(prev)
    return keys


def frame_done(paths: RunPaths, index: int, key: str) -> bool:
    """True when frame ``index`` is on disk, records ``key``, and its PNG hash verifies."""
    ckpt, png = paths.checkpoint(index), paths.frame_png(index)
    if not (ckpt.is_file() and png.is_file()):
        return False
    try:
        meta = read_meta(ckpt)
    except CheckpointError:
        return False
    return meta.key == key and meta.frame == index and meta.png_sha256 == sha256_file(png)


def write_frame(paths: RunPaths, result: FrameResult, index: int, key: str) -> CheckpointMeta:
    """Write the frame's PNG, then its checkpoint (the commit marker), both atomically."""
    data = png_bytes(result.image)
    atomic_write_bytes(paths.frame_png(index), data)
    meta = CheckpointMeta(
        frame=index, step=result.state.step, key=key, png_sha256=hashlib.sha256(data).hexdigest()
    )
    save_checkpoint(paths.checkpoint(index), result.state, meta)
    return meta
