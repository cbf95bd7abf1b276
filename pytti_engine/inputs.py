"""The input files a render reads, from which frame on, and what they contain (for the frame keys).

Frame keys (:func:`pytti_engine.job.plan_keys`) hold the sha256 of every input file in the keys of
the frames that read it, so editing an input in place re-renders from the first frame that reads it
and keeps the frames before:

=============================================  ==============================================
input                                          frames whose key holds its sha256
=============================================  ==============================================
``init_image``, ``target_palette``,            frame 1 (every later key chains from it)
``direct_image_prompts``, ``video_path``,
``flow_weights``, a ``depth_model`` folder,
``input_audio`` (with filters), perceptor and
VQGAN weight files
semantic image prompt ``[pic.png]:1``          every frame whose prompts use it
prompt mask ``text:1_[mask.png]`` / ``.mp4``   every frame whose prompts use it
``stabilization.<loss>_mask``                  every frame where that loss's weight is not 0
=============================================  ==============================================

A render records what it read in ``<run>/inputs.json`` (:class:`InputsRecord`): each input's field,
source, first frame and sha256, plus a :class:`~pytti_engine.hashes.HashCache` so the next render
into the directory re-hashes only files whose size or times changed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytti_engine.atomic import atomic_write_text
from pytti_engine.errors import PyttiError
from pytti_engine.hashes import HashCache, Hasher, file_sha256

INPUTS_FORMAT = 1
URL_PREFIXES = ("http://", "https://")


def is_url(source: str | Path) -> bool:
    """Whether ``source`` is an http(s) URL (as written in a scene)."""
    return isinstance(source, str) and source[:8].lower().startswith(URL_PREFIXES)


@dataclass(frozen=True)
class InputUse:
    """One input file of a render and the frames that read it.

    Args:
        field: where the scene names it (``init_image``, ``scenes[1] mask``, ``perceptors[0] weights``).
        source: the path or URL as the plan holds it.
        path: the local file (for a URL: its fetched copy).
        frames: the 1-based frames whose keys hold its sha256, ascending (never empty).
        by_path: whether the keys name it by ``source`` (else by ``field``: VQGAN files, found in
            search folders, so moving them keeps the keys).
    """

    field: str
    source: str
    path: Path
    frames: tuple[int, ...]
    by_path: bool = True

    @property
    def name(self) -> str:
        """What the frame keys call it: its source, or its field."""
        return self.source if self.by_path else self.field

    @property
    def first_frame(self) -> int:
        """The first frame that reads it."""
        return self.frames[0]


@dataclass(frozen=True)
class InputFile:
    """An :class:`InputUse` with the sha256 of its contents."""

    use: InputUse
    sha256: str


Localize = Callable[[str, str], Path]
"""``(source, field) -> local path`` of a source as the scene names it (a URL's fetched copy)."""


def _local_path(source: str, field: str) -> Path:
    if is_url(source):
        raise PyttiError(f"{field}: {source} has not been fetched (render it with `pytti render`)")
    return Path(source)


def input_uses(scene: Any, plan: Any, localize: Localize = _local_path) -> list[InputUse]:
    """Every input file the scene's frames read, in a stable order (fields, then first use).

    Args:
        scene: the validated scene.
        plan: its plan.
        localize: where a source's file is (default: the path itself; a URL raises).
    """
    uses: list[InputUse] = []

    def add(field: str, source: Any, frames: Sequence[int] = (1,), *, by_path: bool = True) -> None:
        if source is not None and frames:
            text = str(source)
            uses.append(InputUse(field, text, localize(text, field), tuple(sorted(set(frames))), by_path))

    add("init_image", scene.init_image)
    if scene.image_model == "limited_palette":
        add("target_palette", scene.target_palette)
    for i, prompt in enumerate(scene.direct_image_prompts):
        add(f"direct_image_prompts[{i}].image", prompt.image)
    for i, files in enumerate(_perceptor_files(scene)):
        for path in files:
            add(f"perceptors[{i}] weights", path)
    for name, path in _model_files(scene):
        add(name, path, by_path=not name.startswith("vqgan_model"))
    if scene.animation == "video":
        add("video_path", scene.video_path)
    if scene.input_audio is not None and scene.input_audio_filters:
        add("input_audio", scene.input_audio)
    for name, source, frames in _plan_uses(scene, plan):
        add(name, source, frames)
    return uses


def _perceptor_files(scene: Any) -> list[list[Path]]:
    from pytti_engine.perceptors import weight_files

    return [weight_files(p.model, p.pretrained) for p in scene.perceptors]


def _model_files(scene: Any) -> Iterator[tuple[str, Path]]:
    """VQGAN files, the RAFT weights, a local depth model folder's files."""
    from pytti_engine.vqgan_files import vqgan_files

    files = vqgan_files(scene)
    if files is not None:
        yield "vqgan_model config", files.config
        yield "vqgan_model checkpoint", files.checkpoint
    if scene.flow_weights is not None:
        yield "flow_weights", scene.flow_weights
    depth = scene.depth_model
    if depth not in (None, "flat") and Path(depth).is_dir():
        for name in ("config.json", "model.safetensors", "pytorch_model.bin"):
            if (Path(depth) / name).is_file():
                yield "depth_model", Path(depth) / name


def _plan_uses(scene: Any, plan: Any) -> Iterator[tuple[str, str, list[int]]]:
    """Image prompts and image/video masks of prompts, and stabilization masks, with their frames."""
    found: dict[tuple[str, str], list[int]] = {}
    for frame in plan.frames:
        for prompt in frame.prompts:
            if prompt.image is not None:
                found.setdefault((f"scenes[{frame.scene_index}] image prompt", prompt.image), []).append(
                    frame.index
                )
            mask = prompt.mask
            if mask is not None and mask.kind in ("image", "video"):
                key = (f"scenes[{frame.scene_index}] {mask.kind} mask", mask.value)
                found.setdefault(key, []).append(frame.index)
    for (name, source), frames in found.items():
        yield name, source, frames
    stab = scene.stabilization
    for loss in ("direct", "semantic", "edge", "depth", "flow"):
        mask = getattr(stab, f"{loss}_mask")
        if mask is not None:
            frames = [f.index for f in plan.frames if dict(f.stabilization).get(loss)]
            yield f"stabilization.{loss}_mask", str(mask), frames


def hash_inputs(uses: Sequence[InputUse], sha256: Hasher = file_sha256) -> list[InputFile]:
    """The sha256 of every input's file.

    Raises:
        PyttiError: a file cannot be read (naming the field and the file).
    """
    out = []
    for use in uses:
        try:
            out.append(InputFile(use, sha256(use.path)))
        except OSError as e:
            raise PyttiError(f"{use.field}: cannot read {use.path}: {e.strerror or e}") from None
    return out


def frame_inputs(files: Sequence[InputFile], frame_count: int) -> list[dict[str, str]]:
    """Per frame (0-based list), ``{name: sha256}`` of the inputs it reads (empty for most frames)."""
    per_frame: list[dict[str, str]] = [{} for _ in range(frame_count)]
    for f in files:
        for index in f.use.frames:
            if 1 <= index <= frame_count:
                per_frame[index - 1][f.use.name] = f.sha256
    return per_frame


def inputs_digest(files: Sequence[InputFile]) -> str:
    """A hex sha256 over every input's source and contents (which render the files make)."""
    blob = json.dumps([[f.use.field, f.use.source, f.sha256] for f in files], separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


# --- the record in the run directory ----------------------------------------------------------------


@dataclass
class InputsRecord:
    """``<run>/inputs.json``: what the last render read, and the hash cache.

    Args:
        inputs: ``{"field", "source", "first_frame", "sha256"}`` per input of the last render.
        hashes: the content hash cache.
    """

    inputs: list[dict[str, Any]] = field(default_factory=list)
    hashes: HashCache = field(default_factory=HashCache)

    @classmethod
    def read(cls, path: Path) -> InputsRecord:
        """The record at ``path``; an empty one when it is missing or unreadable (inputs are re-hashed)."""
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return cls()
        if not isinstance(data, Mapping) or data.get("format") != INPUTS_FORMAT:
            return cls()
        inputs = [i for i in data.get("inputs", []) if isinstance(i, Mapping)]
        return cls([dict(i) for i in inputs], HashCache.from_json(data.get("hashes")))

    def write(self, path: Path, files: Sequence[InputFile]) -> None:
        """Record ``files`` as what this render reads, with the cache (atomically)."""
        self.inputs = [
            {
                "field": f.use.field,
                "source": f.use.source,
                "first_frame": f.use.first_frame,
                "sha256": f.sha256,
            }
            for f in files
        ]
        doc = {"format": INPUTS_FORMAT, "inputs": self.inputs, "hashes": self.hashes.to_json()}
        atomic_write_text(path, json.dumps(doc, indent=1, sort_keys=True) + "\n")


@dataclass(frozen=True)
class InputChange:
    """An input whose contents differ from what the previous render into the run directory read."""

    field: str
    source: str
    first_frame: int
    old_sha256: str
    new_sha256: str


def changed_inputs(previous: Sequence[Mapping[str, Any]], files: Sequence[InputFile]) -> list[InputChange]:
    """The inputs of ``files`` that the previous render read (same field and source) with other contents,
    ordered by the first frame that reads them."""
    before = {(str(i.get("field")), str(i.get("source"))): str(i.get("sha256")) for i in previous}
    changes = []
    for f in files:
        old = before.get((f.use.field, f.use.source))
        if old is not None and old != f.sha256:
            changes.append(InputChange(f.use.field, f.use.source, f.use.first_frame, old, f.sha256))
    return sorted(changes, key=lambda c: c.first_frame)


def describe_changes(changes: Sequence[InputChange]) -> str | None:
    """One line naming the changed inputs and the first frame that renders again, or ``None``.

    Example: ``input changed since the last render: scenes[0] image mask /s/mask.png (read from frame 5);
    frames 5 and later render again``.
    """
    if not changes:
        return None
    what = "; ".join(f"{c.field} {c.source} (read from frame {c.first_frame})" for c in changes)
    noun = "input" if len(changes) == 1 else "inputs"
    first = changes[0].first_frame
    return f"{noun} changed since the last render: {what}; frames {first} and later render again"
