"""Content hashes of input files, each computed once per file version.

A file's version is ``(real path, size, mtime_ns, ctime_ns)``: writing to a file changes its mtime and
ctime, so an edited file is hashed again, and an unchanged one (a 2 GB source video) is not. Two
caches use that version as their key:

* in the process, :func:`file_sha256` (an LRU of the latest versions it hashed);
* on disk, a :class:`HashCache`, which a render keeps in its run directory (``inputs.json``) so the next
  render into it (another process, a worker) does not read large inputs again.

A file rewritten within one clock tick with the same size keeps its version; the mtime resolution
of Linux file systems is a few milliseconds, far below how fast a person edits an input.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from pytti_engine.atomic import sha256_file

Hasher = Callable[[Path], str]
"""``path -> hex sha256 of its contents`` (:func:`file_sha256` or a :meth:`HashCache.sha256`)."""

FileVersion = tuple[int, int, int]
"""``(size, mtime_ns, ctime_ns)`` of a file."""


def file_version(path: Path) -> FileVersion:
    """``(size, mtime_ns, ctime_ns)`` of ``path`` (following links).

    Raises:
        OSError: the file cannot be stat'ed.
    """
    st = os.stat(path)
    return st.st_size, st.st_mtime_ns, st.st_ctime_ns


@lru_cache(maxsize=64)
def _sha256_of(path: str, version: FileVersion) -> str:
    return sha256_file(Path(path))  # ``version`` is only the cache key


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file's contents, computed once per process per file version.

    Raises:
        OSError: the file cannot be read.
    """
    real = Path(path).resolve()
    return _sha256_of(str(real), file_version(real))


@dataclass
class HashCache:
    """A persistent cache of content hashes: real path → (file version, sha256).

    Args:
        entries: ``{real path: [size, mtime_ns, ctime_ns, sha256]}``, as :meth:`to_json` writes them.
    """

    entries: dict[str, tuple[int, int, int, str]] = field(default_factory=dict)
    changed: bool = False

    @classmethod
    def from_json(cls, data: Any) -> HashCache:
        """The cache a :meth:`to_json` wrote; unreadable entries are dropped (they are hashed again)."""
        entries: dict[str, tuple[int, int, int, str]] = {}
        if isinstance(data, Mapping):
            for path, entry in data.items():
                try:
                    size, mtime_ns, ctime_ns, sha = entry
                    entries[str(path)] = (int(size), int(mtime_ns), int(ctime_ns), str(sha))
                except (TypeError, ValueError):
                    continue
        return cls(entries)

    def to_json(self) -> dict[str, list[int | str]]:
        """JSON-ready entries, sorted by path."""
        return {path: list(entry) for path, entry in sorted(self.entries.items())}

    def sha256(self, path: Path) -> str:
        """Hex sha256 of ``path``'s contents: from the cache when its version is unchanged.

        Raises:
            OSError: the file cannot be read.
        """
        real = Path(path).resolve()
        version = file_version(real)
        entry = self.entries.get(str(real))
        if entry is not None and entry[:3] == version:
            return entry[3]
        sha = _sha256_of(str(real), version)
        self.entries[str(real)] = (*version, sha)
        self.changed = True
        return sha


def files_sha256(paths: Sequence[Path], sha256: Hasher = file_sha256) -> str:
    """sha256 over the names and contents of files, in the given order (a model folder's identity)."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.name.encode() + b"\0")
        digest.update(bytes.fromhex(sha256(path)))
    return digest.hexdigest()
