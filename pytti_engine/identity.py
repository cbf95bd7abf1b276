"""Which render a run directory belongs to, default run directories that never collide, and handing a
directory over to another render (``--replace``).

A run directory belongs to one **render identity**: the scene *file* (its real path; for scene text
pasted into the UI, the ``inline-<hash>.yaml`` file written into the run directory) plus the overrides
(``--set``, typed form fields), in order. The scene's *contents* are not part of the identity: editing
the scene file and rendering again is the same run being edited, so frames before the first changed
one are kept (incremental re-render), and ``pytti resume`` and a UI "Retry" render the same identity.
Another scene file, other overrides, or other pasted text is another render: it is refused in a
directory that holds a render, unless the user asks to replace it.

``run.json`` (written under the run lock) records the identity: ``scene_path`` and ``overrides``.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from pytti_engine.confine import real_path
from pytti_engine.errors import OutputError
from pytti_engine.fetch import INPUTS_DIR
from pytti_engine.rundir import RunPaths, busy_message, read_record

MAX_LABEL_CHARS = 80
REPLACE_HINT = "--replace, or replace: true in the flow parameters"


def normalize_override(item: str) -> str:
    """``" seed = 8"`` → ``"seed=8"``: the form compared between renders."""
    key, sep, value = item.partition("=")
    return f"{key.strip()}={value.strip()}" if sep else item.strip()


@dataclass(frozen=True)
class RunIdentity:
    """The render a run directory belongs to.

    Args:
        scene: the real path of the scene file, or its bare file name when the file lies inside the
            run directory itself (pasted scene text), so such a run can move with its folder.
        overrides: the overrides in order, normalized (:func:`normalize_override`).
    """

    scene: str
    overrides: tuple[str, ...] = ()

    @classmethod
    def of(cls, scene_path: str | Path, overrides: Sequence[str], run_dir: str | Path) -> RunIdentity:
        """The identity of rendering ``scene_path`` with ``overrides`` into ``run_dir``."""
        real = real_path(scene_path)
        scene = real.name if real.parent == real_path(run_dir) else str(real)
        return cls(scene, tuple(normalize_override(o) for o in overrides))

    @classmethod
    def inline(cls, file_name: str, overrides: Sequence[str]) -> RunIdentity:
        """The identity of pasted scene text, written as ``file_name`` into its run directory."""
        return cls(file_name, tuple(normalize_override(o) for o in overrides))

    @property
    def digest(self) -> str:
        """A hex sha256 of the identity."""
        blob = json.dumps([self.scene, list(self.overrides)], separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()

    def describe(self) -> str:
        """``scene.yaml --set seed=8`` (for messages)."""
        return " ".join([self.scene, *(f"--set {o}" for o in self.overrides)])


def recorded_identity(root: Path) -> RunIdentity | None:
    """The identity ``run.json`` in ``root`` records, or ``None`` when there is no ``run.json``.

    Raises:
        OutputError: ``run.json`` exists but cannot be read.
    """
    run_json = RunPaths(root).run_json
    try:
        data = json.loads(run_json.read_text(encoding="utf-8"))
        return RunIdentity.of(str(data["scene_path"]), [str(o) for o in data.get("overrides", [])], root)
    except (FileNotFoundError, NotADirectoryError):  # no run directory (yet)
        return None
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise OutputError(
            f"{run_json} cannot be read ({e}), so the render it belongs to is unknown; "
            f"choose another out directory or replace it ({REPLACE_HINT})"
        ) from None


def lock_holder(root: Path) -> str | None:
    """Who holds ``root``'s run lock right now (``pid N on HOST …``), or ``None`` when nobody does."""
    try:
        fd = os.open(root / ".lock", os.O_RDWR)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def taken_message(root: Path, owner: RunIdentity, identity: RunIdentity) -> str:
    """The one-line refusal for rendering ``identity`` into ``root``, which belongs to ``owner``."""
    return (
        f"{root} holds another render ({owner.describe()}); this render is {identity.describe()}. "
        f"Choose another out directory, or replace that render ({REPLACE_HINT})"
    )


def check_owner(root: Path, identity: RunIdentity, *, replace: bool) -> RunIdentity | None:
    """Refuse ``root`` when it holds another render, unless ``replace``.

    Call it while holding the run lock (the flow) or just before (the CLI's early check).

    Returns:
        The other render's identity when it is being replaced, else ``None``.

    Raises:
        OutputError: ``root`` holds another render and ``replace`` is false (or its ``run.json`` is
            unreadable).
    """
    try:
        owner = recorded_identity(root)
    except OutputError:
        if replace:
            return RunIdentity("(unreadable run.json)")
        raise
    if owner is None or owner == identity:
        return None
    if not replace:
        raise OutputError(taken_message(root, owner, identity))
    return owner


def check_run_dir(root: Path, identity: RunIdentity, *, replace: bool) -> None:
    """The early check (before Prefect starts): ``root`` is not being rendered and holds no other render.

    Raises:
        OutputError: another process holds the run lock, or the directory holds another render.
    """
    holder = lock_holder(root)
    if holder is not None:
        raise OutputError(busy_message(root, holder))
    check_owner(root, identity, replace=replace)


def override_label(overrides: Sequence[str]) -> str:
    """A folder name for a set of overrides, Hydra's ``override_dirname`` style: ``seed=1,steps=20``.

    Characters other than letters, digits and ``._=,+-`` become ``_``; a label longer than
    80 characters becomes ``set-<hash>``.
    """
    text = ",".join(normalize_override(o) for o in overrides)
    label = re.sub(r"[^A-Za-z0-9._=,+-]", "_", text)
    if len(label) > MAX_LABEL_CHARS or label.strip("._") == "":
        return "set-" + hashlib.sha256(text.encode()).hexdigest()[:10]
    return label


def _free_for(candidate: Path, identity: RunIdentity, taken: Mapping[Path, RunIdentity]) -> bool:
    """Whether ``candidate`` is unused, or used by ``identity`` (on disk and among ``taken``)."""
    other = taken.get(real_path(candidate))
    if other is not None and other != identity:
        return False
    try:
        owner = recorded_identity(candidate)
    except OutputError:
        return False
    if owner is None:  # no run.json: free, unless a render that has not written it yet holds the lock
        holder = lock_holder(candidate)
        return holder is None or identity.digest[:12] in holder
    return owner == identity


def default_run_dir(
    root: Path,
    stem: str,
    identity: RunIdentity,
    *,
    label: Sequence[str] = (),
    taken: Mapping[Path, RunIdentity] | None = None,
) -> Path:
    """The run directory a render gets when none is given; never one that holds another render.

    ``ROOT/<stem>`` (``ROOT/<stem>/<label>`` when ``label``, the overrides that name it, is not
    empty), if that folder is unused or already belongs to ``identity``; otherwise the same name with
    ``-<8 hex digits of the identity>`` appended. So ``alice/test.yaml`` gets ``renders/test`` and then
    ``bob/test.yaml`` gets ``renders/test-1a2b3c4d``; each keeps its folder on every later render.

    Args:
        root: the renders root (:func:`pytti_engine.confine.renders_root`) or a batch's out root.
        stem: the scene file's stem, or ``inline-<hash>`` for pasted text.
        identity: the render.
        label: the overrides that name the sub-folder (all of them for ``pytti render``; the sweep's
            combination for a batch).
        taken: folders already given to other renders of the same batch (real paths).
    """
    base = root / stem
    if label:
        base = base / override_label(label)
    for candidate in (base, base.with_name(f"{base.name}-{identity.digest[:8]}")):
        if _free_for(candidate, identity, taken or {}):
            return candidate
    return candidate


# --- handing a directory over, and frames that no longer belong --------------------------------------

EXPORT_DIRS = ("depth", "flow", "flows", "tensorboard", INPUTS_DIR)
VIDEO_SUFFIXES = (".mp4", ".webm", ".gif", "_depth.mp4", "_flow.mp4")


def forget_previous_render(paths: RunPaths, previous: RunIdentity) -> list[str]:
    """Remove what a replaced render left besides its frames: videos, manifest, contact sheet, fork
    link, exports, its record of the inputs it read (``inputs.json``) and its fetched URL inputs
    (``inputs/``), so the new render neither reports "input changed" against another render's inputs
    nor reuses a copy that render fetched. Call while holding the run lock, before the new render's
    plan is written.

    Returns:
        The names removed.
    """
    stem = Path(previous.scene).stem
    names = [f"{stem}{suffix}" for suffix in VIDEO_SUFFIXES]
    names += [
        "manifest.json",
        "contact-sheet.png",
        "render.log",
        paths.fork_json.name,
        paths.inputs_json.name,
    ]
    removed = []
    for name in names:
        target = paths.root / name
        if target.is_file():
            target.unlink()
            removed.append(name)
    for name in EXPORT_DIRS:
        target = paths.root / name
        if target.is_dir():
            shutil.rmtree(target)
            removed.append(name + "/")
    return removed


def _frame_indices(paths: RunPaths) -> set[int]:
    found: set[int] = set()
    for folder, suffix in (
        (paths.frames_dir, ".png"),
        (paths.records_dir, ".json"),
        (paths.checkpoints_dir, ".pt"),
    ):
        if folder.is_dir():
            found.update(int(p.stem) for p in folder.glob(f"*{suffix}") if p.stem.isdigit())
    return found


def drop_frame(paths: RunPaths, index: int) -> None:
    """Delete frame ``index``: its record (the commit marker) first, then its PNG and checkpoint."""
    for path in (paths.record(index), paths.frame_png(index), paths.checkpoint(index)):
        path.unlink(missing_ok=True)


def drop_stale_frames(paths: RunPaths, keys: Sequence[str], *, foreign: bool) -> list[int]:
    """Delete frames that cannot belong to the render whose frame keys are ``keys``.

    Always: frames beyond the scene's last frame (a shortened scene never shows them, nor keeps
    them in ``frames/``). With ``foreign`` (the directory was just taken over from another render):
    also every frame whose record does not hold this render's key, so an interrupted take-over never
    leaves the two renders' frames mixed. Frames whose key matches are identical by construction and
    are kept. Call while holding the run lock.

    Returns:
        The frame indices deleted, sorted.
    """
    dropped = []
    for index in sorted(_frame_indices(paths)):
        beyond = index > len(keys)
        if not beyond and foreign:
            record = read_record(paths, index)
            beyond = record is None or record.key != keys[index - 1]
        if beyond:
            drop_frame(paths, index)
            dropped.append(index)
    return dropped
