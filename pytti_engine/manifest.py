"""Provenance: ``manifest.json`` in the run directory, and a compact copy for the video's metadata."""

from __future__ import annotations

import hashlib
import json
import platform
import subprocess
import time
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from pytti_engine import engine_version
from pytti_engine.io import atomic_write_text
from pytti_engine.rundir import FrameRecordData, RunPaths, read_record

MANIFEST_FORMAT = 1
METADATA_KEY = "pytti_manifest"
_PACKAGES = (
    "torch",
    "torchvision",
    "open_clip_torch",
    "kornia",
    "prefect",
    "numpy",
    "pillow",
    "imageio-ffmpeg",
    "diffusers",
)


def package_versions() -> dict[str, str]:
    """Installed versions of the packages that shape a render (``"-"`` when absent)."""
    versions = {"python": platform.python_version(), "pytti-flow": engine_version()}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "-"
    return versions


def git_revision(path: Path) -> str | None:
    """The git commit of the checkout holding ``path`` (with ``+dirty`` if modified), or ``None``."""
    try:
        rev = subprocess.run(
            ["git", "-C", str(path), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(path), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return rev + ("+dirty" if dirty else "")


def models_record(perceptors: Sequence[Any], device: str, vqgan: Any = None) -> dict[str, Any]:
    """The models a render used: each perceptor's open_clip name and identity (tag, or sha256 of the
    weight files), its activation (``quick_gelu`` and why), and for a vqgan render the VQGAN (name,
    files, sha256 of the checkpoint, ...)."""
    record: dict[str, Any] = {
        "device": device,
        "perceptors": [
            {
                "name": p.name,
                "identity": p.identity,
                "input_size": p.input_size,
                "quick_gelu": p.quick_gelu,
                "activation": p.activation,
            }
            for p in perceptors
        ],
    }
    if vqgan is not None:
        record["vqgan"] = vqgan.record()
    return record


def write_models_record(paths: RunPaths, record: dict[str, Any]) -> None:
    """Write ``models.json`` (atomically) unless it already says the same."""
    text = json.dumps(record, indent=1, sort_keys=True) + "\n"
    target = paths.root / "models.json"
    if not target.is_file() or target.read_text() != text:
        atomic_write_text(target, text)


def frame_records(paths: RunPaths, count: int) -> list[FrameRecordData]:
    """The records of frames 1..count (every one must exist)."""
    records = []
    for index in range(1, count + 1):
        record = read_record(paths, index)
        if record is None:
            raise FileNotFoundError(f"{paths.record(index)}: frame {index} has no record")
        records.append(record)
    return records


def build_manifest(paths: RunPaths, run: dict[str, Any], scene: dict[str, Any], count: int) -> dict[str, Any]:
    """The full manifest: versions, git revision, run settings, models and every frame's record.

    Args:
        paths: the run directory.
        run: how it was invoked (``run.json``: scene path, overrides, device, models).
        scene: the scene facts to record (title, seed, size, fps, ...).
        count: number of frames.
    """
    records = frame_records(paths, count)
    models_file = paths.root / "models.json"
    models = json.loads(models_file.read_text()) if models_file.is_file() else None
    return {
        "format": MANIFEST_FORMAT,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "versions": package_versions(),
        "git": git_revision(Path(__file__).parent),
        "run": run,
        "scene": scene,
        "models": models,
        "frames": [r.to_dict() for r in records],
    }


def compact_manifest(manifest: dict[str, Any]) -> dict[str, Any]:
    """What goes into the video's metadata: everything but the per-frame list, plus a digest of it."""
    frames: Sequence[dict[str, Any]] = manifest["frames"]
    digest = hashlib.sha256("".join(f["png_sha256"] for f in frames).encode()).hexdigest()
    compact = {k: v for k, v in manifest.items() if k != "frames"}
    compact["frame_count"] = len(frames)
    compact["last_key"] = frames[-1]["key"] if frames else None
    compact["frames_sha256"] = digest
    compact["render_seconds"] = round(sum(f["seconds"] for f in frames), 2)
    return compact


def manifest_metadata(manifest: dict[str, Any]) -> dict[str, str]:
    """MP4 metadata carrying the compact manifest as JSON under :data:`METADATA_KEY`."""
    return {METADATA_KEY: json.dumps(compact_manifest(manifest), sort_keys=True, separators=(",", ":"))}
