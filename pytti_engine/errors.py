"""The engine's error hierarchy.

Every error a user can cause derives from :class:`PyttiError`, so the CLI maps the whole family to
exit code 2 ("bad input") with a one-line message, while anything else is a runtime failure (exit 1).
"""

from __future__ import annotations

import errno
import shutil
from pathlib import Path


class PyttiError(Exception):
    """Base class for errors that a user can fix (bad input, missing model, unusable path)."""


class SceneError(PyttiError):
    """A problem in a scene file, located at ``path:line:col`` where known.

    Args:
        path: the scene file (or a pseudo-name such as ``<--set>`` for command-line overrides).
        line: 1-based line number, or ``None`` when unknown.
        col: 1-based column number, or ``None`` when unknown.
        message: what is wrong and, where possible, how to fix it.
    """

    def __init__(self, path: str | Path, line: int | None, col: int | None, message: str) -> None:
        self.path = str(path)
        self.line = line
        self.col = col
        self.message = message
        super().__init__(self.location() + message)

    def location(self) -> str:
        """``"FILE:LINE:COL: "`` (only the parts that are known)."""
        parts = [self.path]
        if self.line is not None:
            parts.append(str(self.line))
            if self.col is not None:
                parts.append(str(self.col))
        return ":".join(parts) + ": "


class SceneErrors(SceneError):
    """Several scene errors reported together (validation reports all of them, not just the first)."""

    def __init__(self, errors: list[SceneError]) -> None:
        if not errors:
            raise ValueError("SceneErrors needs at least one error")
        self.errors = list(errors)
        first = errors[0]
        super().__init__(first.path, first.line, first.col, first.message)
        self.args = ("\n".join(str(e) for e in self.errors),)

    def __str__(self) -> str:
        return "\n".join(str(e) for e in self.errors)


class ShapeError(PyttiError, ValueError):
    """A tensor does not have the documented shape."""


class ModelLoadError(PyttiError):
    """A model (perceptor, depth, flow) could not be loaded; the message says how to provide it."""


class FFmpegError(PyttiError):
    """ffmpeg failed; the message carries ffmpeg's own error text."""


class OutputError(PyttiError):
    """The output directory cannot be used (unwritable, locked by another render, ...)."""


class DiskFullError(OutputError):
    """A write failed because the file system is full (or over quota); the message names the path and
    the space left."""


DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


def free_space(path: Path) -> int:
    """Bytes free to this user on the file system of ``path`` (or of its nearest existing folder)."""
    folder = Path(path)
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return shutil.disk_usage(folder).free


def format_bytes(count: float) -> str:
    """``1536`` → ``"1.5 KiB"``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(count) < 1024 or unit == "TiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    raise AssertionError("unreachable")


def disk_full_error(path: Path) -> DiskFullError:
    """The error for a write to ``path`` that ran out of space: the path and the space left."""
    return DiskFullError(
        f"no space left on device writing {path} ({format_bytes(free_space(path))} free there); "
        "free some space and render again: finished frames are kept"
    )
