"""The run directory: the durable source of truth of a render (design.md §4).

```
RUN_DIR/
  scene.yaml            the scene as given
  run.json              how it was invoked (scene path, overrides, device)
  plan.json             every resolved value for every frame
  frames/000001.png …
  checkpoints/000001.pt …  image + optimizer state (pruned by the retention policy)
  records/000001.json …    per frame: key, PNG and checkpoint sha256, loss, timing (the commit marker)
  manifest.json         versions, models, every frame's record
  <stem>.mp4
```

Frame N is *done* when ``records/N.json`` records key N and the sha256 it records matches
``frames/N.png``. The PNG, the checkpoint and then the record are each written atomically, in that
order, so a killed process never leaves a frame that looks done. Checkpoints are only needed to
continue: a missing (pruned) or corrupted one is detected by its sha256, and the state is rebuilt
from the newest good checkpoint before it (see :func:`newest_good_checkpoint`).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import math
import os
import socket
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pytti_engine import engine_version
from pytti_engine.checkpoints import CheckpointMeta, checkpoint_bytes
from pytti_engine.errors import OutputError
from pytti_engine.io import atomic_write_bytes, atomic_write_text, png_bytes, sha256_file
from pytti_engine.render import FrameResult
from pytti_engine.state import RenderState


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
    def inputs_json(self) -> Path:
        """What the last render read (each input file's sha256) and the content hash cache."""
        return self.root / "inputs.json"

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

    @property
    def fork_json(self) -> Path:
        """Present when the run continues another run's frames (``pytti fork``)."""
        return self.root / "fork.json"

    @property
    def records_dir(self) -> Path:
        """``records/``."""
        return self.root / "records"

    def record(self, index: int) -> Path:
        """``records/NNNNNN.json`` (1-based)."""
        return self.records_dir / f"{index:06d}.json"

    def video(self, stem: str) -> Path:
        """``<stem>.mp4``."""
        return self.root / f"{stem}.mp4"


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


def frame_keys(
    fingerprint: Mapping[str, Any], frames: Iterable[Mapping[str, Any]], *, base_keys: Sequence[str] = ()
) -> list[str]:
    """Chain of frame keys: key N = sha256(engine version, settings, frame N's values, key N-1).

    Args:
        fingerprint: JSON-friendly settings that affect pixels (render settings, perceptor specs).
        frames: each frame's resolved values (``FramePlan.to_dict()``).
        base_keys: keys of frames taken over from another run (a fork): they replace the first
            ``len(base_keys)`` keys, and the chain continues from the last of them.

    Returns:
        One hex key per frame, in order.
    """
    base = json.dumps({"engine": engine_version(), "settings": fingerprint}, sort_keys=True, default=str)
    keys: list[str] = []
    prev = hashlib.sha256(base.encode()).hexdigest()
    for n, frame in enumerate(frames):
        if n < len(base_keys):
            prev = base_keys[n]
            keys.append(prev)
            continue
        blob = json.dumps({"prev": prev, "frame": frame}, sort_keys=True, default=str)
        prev = hashlib.sha256(blob.encode()).hexdigest()
        keys.append(prev)
    return keys


@dataclass(frozen=True)
class FrameRecordData:
    """What ``records/N.json`` says about a finished frame."""

    index: int
    key: str
    png_sha256: str
    checkpoint_sha256: str
    step: int
    loss: float | None
    seconds: float
    attempts: int = 1

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return dict(self.__dict__)


def read_record(paths: RunPaths, index: int) -> FrameRecordData | None:
    """The record of frame ``index``, or ``None`` when it is missing or unreadable."""
    try:
        data = json.loads(paths.record(index).read_text())
        return FrameRecordData(**data)
    except (OSError, ValueError, TypeError):
        return None


def frame_done(paths: RunPaths, index: int, key: str) -> bool:
    """True when frame ``index`` records ``key`` and its PNG's sha256 verifies."""
    record = read_record(paths, index)
    if record is None or record.key != key or record.index != index:
        return False
    png = paths.frame_png(index)
    return png.is_file() and sha256_file(png) == record.png_sha256


def checkpoint_good(paths: RunPaths, index: int, key: str) -> bool:
    """True when checkpoint ``index`` exists and matches what frame ``index``'s record says."""
    record = read_record(paths, index)
    ckpt = paths.checkpoint(index)
    if record is None or record.key != key or not ckpt.is_file():
        return False
    return sha256_file(ckpt) == record.checkpoint_sha256


def newest_good_checkpoint(paths: RunPaths, before: int, keys: Sequence[str]) -> int | None:
    """The newest frame M < ``before`` whose checkpoint is intact and belongs to key M (or ``None``)."""
    for index in range(before - 1, 0, -1):
        if checkpoint_good(paths, index, keys[index - 1]):
            return index
    return None


def write_frame(
    paths: RunPaths, result: FrameResult, index: int, key: str, *, attempts: int = 1
) -> FrameRecordData:
    """Write the frame's PNG, its checkpoint, then its record (the commit marker), each atomically."""
    data = png_bytes(result.image)
    atomic_write_bytes(paths.frame_png(index), data)
    png_sha = hashlib.sha256(data).hexdigest()
    meta = CheckpointMeta(frame=index, step=result.state.step, key=key, png_sha256=png_sha)
    ckpt = checkpoint_bytes(result.state, meta)
    atomic_write_bytes(paths.checkpoint(index), ckpt)
    loss = None if math.isnan(result.loss) else result.loss
    record = FrameRecordData(
        index=index,
        key=key,
        png_sha256=png_sha,
        checkpoint_sha256=hashlib.sha256(ckpt).hexdigest(),
        step=result.state.step,
        loss=loss,
        seconds=round(result.seconds, 4),
        attempts=attempts,
    )
    atomic_write_text(paths.record(index), json.dumps(record.to_dict(), sort_keys=True) + "\n")
    return record


def save_state_checkpoint(paths: RunPaths, state: RenderState, index: int, key: str) -> None:
    """Rewrite checkpoint ``index`` from a rebuilt state, and its sha256 in the frame's record."""
    record = read_record(paths, index)
    if record is None:
        raise OutputError(f"frame {index} has no record: cannot restore its checkpoint")
    meta = CheckpointMeta(frame=index, step=state.step, key=key, png_sha256=record.png_sha256)
    ckpt = checkpoint_bytes(state, meta)
    atomic_write_bytes(paths.checkpoint(index), ckpt)
    fixed = FrameRecordData(**{**record.to_dict(), "checkpoint_sha256": hashlib.sha256(ckpt).hexdigest()})
    atomic_write_text(paths.record(index), json.dumps(fixed.to_dict(), sort_keys=True) + "\n")


RetentionKind = Literal["all", "last", "every"]


@dataclass(frozen=True)
class Retention:
    """Which checkpoints to keep: ``all``, the ``last`` K, or ``every`` Kth (the newest is always kept)."""

    kind: RetentionKind = "all"
    k: int = 1

    @classmethod
    def parse(cls, text: str) -> Retention:
        """``all`` | ``last:K`` | ``every:K`` (K >= 1).

        Raises:
            ValueError: anything else.
        """
        if text == "all":
            return cls()
        kind, _, count = text.partition(":")
        if kind in ("last", "every") and count.isdigit() and int(count) >= 1:
            return cls(kind=kind, k=int(count))  # type: ignore[arg-type]
        raise ValueError(f"keep_checkpoints must be all, last:K or every:K, got {text!r}")

    def keeps(self, index: int, newest: int) -> bool:
        """Whether checkpoint ``index`` survives once ``newest`` is the newest frame."""
        if self.kind == "all" or index == newest:
            return True
        if self.kind == "last":
            return index > newest - self.k
        return index % self.k == 0


def prune_checkpoints(paths: RunPaths, retention: Retention, newest: int) -> list[int]:
    """Delete the checkpoints ``retention`` drops once ``newest`` is written; returns their frames."""
    if retention.kind == "all" or not paths.checkpoints_dir.is_dir():
        return []
    dropped = []
    for ckpt in paths.checkpoints_dir.glob("*.pt"):
        if ckpt.stem.isdigit() and int(ckpt.stem) <= newest and not retention.keeps(int(ckpt.stem), newest):
            ckpt.unlink(missing_ok=True)
            dropped.append(int(ckpt.stem))
    return sorted(dropped)


def busy_message(root: Path, holder: str) -> str:
    """The refusal for a directory whose run lock ``holder`` holds."""
    return f"{root} is being rendered by {holder}; wait for it to finish or choose another out directory"


class RunLock:
    """An exclusive lock on a run directory (``.lock``), released by the OS if the process dies.

    Take it before writing anything into the directory: a refused render must leave it untouched.

    Args:
        root: the run directory (created if missing).
        note: written into the lock file after the holder's pid and host (the render's identity), so
            others can tell which render holds it.

    Raises:
        OutputError: on entry, when another process is rendering into the same directory.
    """

    def __init__(self, root: Path, note: str = "") -> None:
        self.path = root / ".lock"
        self.note = note
        self._fd: int | None = None

    def __enter__(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise OutputError(busy_message(self.path.parent, holder)) from None
        os.ftruncate(fd, 0)
        note = f" ({self.note})" if self.note else ""
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}{note}\n".encode(), 0)
        self._fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def fork_base_keys(paths: RunPaths) -> list[str]:
    """The keys of the frames a forked run took over (empty for an ordinary run)."""
    if not paths.fork_json.is_file():
        return []
    return [str(k) for k in json.loads(paths.fork_json.read_text())["keys"]]


def fork_run(source: RunPaths, at: int, dest: RunPaths) -> None:
    """Start ``dest`` as a branch of ``source``: frames 1..``at`` (records, PNGs, checkpoint ``at``).

    Rendering a scene into ``dest`` then keeps those frames and continues from frame ``at``'s state.

    Raises:
        OutputError: ``source`` has no such done frame or kept checkpoint, or ``dest`` already has frames.
    """
    plan = json.loads(source.plan_json.read_text()) if source.plan_json.is_file() else None
    if plan is None:
        raise OutputError(f"{source.root} is not a run directory (no plan.json)")
    keys = fork_base_keys(source) or []
    keys = [*keys, *plan["keys"][len(keys) :]]
    if not 1 <= at <= len(keys):
        raise OutputError(f"--at {at}: {source.root} has frames 1..{len(keys)}")
    missing = [i for i in range(1, at + 1) if not frame_done(source, i, keys[i - 1])]
    if missing:
        raise OutputError(
            f"{source.root}: frame {missing[0]} is not done, so the run cannot be forked at {at}"
        )
    if not checkpoint_good(source, at, keys[at - 1]):
        raise OutputError(
            f"{source.root}: the checkpoint of frame {at} was pruned or is damaged; fork at a kept one"
        )
    if dest.records_dir.is_dir() and any(dest.records_dir.iterdir()):
        raise OutputError(f"{dest.root} already holds frames; fork into a new directory")
    for index in range(1, at + 1):
        atomic_write_bytes(dest.frame_png(index), source.frame_png(index).read_bytes())
        atomic_write_bytes(dest.record(index), source.record(index).read_bytes())
    atomic_write_bytes(dest.checkpoint(at), source.checkpoint(at).read_bytes())
    fork = {"from": str(source.root), "at": at, "keys": keys[:at]}
    atomic_write_text(dest.fork_json, json.dumps(fork, indent=1) + "\n")


STALE_TEMP_PATTERNS = (".*.tmp", ".*.part.mp4", ".*.part.webm", ".*.part.gif")
"""Hidden temporary files of :mod:`pytti_engine.atomic`: ``.<name>.<random>.tmp``, and the encoder's
``.<stem>.<random>.part.<container>`` (ffmpeg needs the extension)."""


def remove_stale_temp_files(paths: RunPaths) -> int:
    """Delete temp files a killed writer (or encoder) left behind (call only while holding the
    :class:`RunLock`); returns how many."""
    removed = 0
    for folder in (paths.root, paths.frames_dir, paths.checkpoints_dir, paths.records_dir):
        if folder.is_dir():
            for tmp in {p for pattern in STALE_TEMP_PATTERNS for p in folder.glob(pattern)}:
                tmp.unlink(missing_ok=True)
                removed += 1
    return removed
