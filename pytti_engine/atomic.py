"""Atomic file writes and content hashes, without torch (the scene language and the CLI use them too).

A file is written into a hidden temporary file beside its destination, fsynced, then renamed over it,
so a killed process never leaves a file that looks complete. Temporary files are created with mode
``0o666`` and the process umask applies, exactly as for ``open(path, "w")``: the product's frames,
videos and manifests are as readable as any other file the user creates (``tempfile.mkstemp`` would
make them ``0o600``, and a rename keeps that).
"""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import IO

from pytti_engine.errors import DISK_FULL_ERRNOS, disk_full_error

TEMP_SUFFIX = ".tmp"


def create_temp_beside(path: Path, suffix: str = TEMP_SUFFIX) -> tuple[int, Path]:
    """Create a new, empty hidden file ``.<name>.<random><suffix>`` in ``path``'s folder.

    The folder is created if needed. The file is opened for writing with mode ``0o666`` minus the
    umask, exclusively (an existing file is never reused).

    Args:
        path: the destination the temporary file stands in for.
        suffix: the temporary file's suffix (``.tmp``; ``.part.mp4`` for ffmpeg, which needs the extension).

    Returns:
        The open file descriptor and the temporary file's path.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}{suffix}"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
        except FileExistsError:
            continue
        return fd, tmp


def atomic_write(path: Path, write: Callable[[IO[bytes]], object]) -> None:
    """Write ``path`` through a temporary file in the same folder, fsync, then rename over it.

    Args:
        path: the destination file.
        write: called with a binary file object to fill.

    Raises:
        DiskFullError: the file system is full or over quota (naming ``path`` and the space left).
    """
    try:
        fd, tmp = create_temp_beside(path)
    except OSError as e:
        if e.errno in DISK_FULL_ERRNOS:
            raise disk_full_error(path) from e
        raise
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        if e.errno in DISK_FULL_ERRNOS:
            raise disk_full_error(path) from e
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Atomically write ``data`` to ``path``."""
    atomic_write(path, lambda fh: fh.write(data))


def atomic_write_text(path: Path, text: str) -> None:
    """Atomically write UTF-8 ``text`` to ``path``."""
    atomic_write_bytes(path, text.encode("utf-8"))


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's contents."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
