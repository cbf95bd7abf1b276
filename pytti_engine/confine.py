"""Where a render may read and write: allowed input/output roots and the renders root.

A worker that renders for whoever can reach the Prefect UI must not read or write wherever its user
can. Three environment settings (also options of ``pytti serve``) say where:

- ``PYTTI_ALLOWED_INPUT_ROOTS``: colon-separated folders. When set, the scene file and every file or
  folder a scene names (init image, image prompts, masks, source video, audio, palette, weights, model
  folders) must lie inside one of them.
- ``PYTTI_ALLOWED_OUTPUT_ROOTS``: colon-separated folders. When set, every run directory must lie
  inside one of them.
- ``PYTTI_RENDERS_ROOT``: the folder default run directories go in (default ``renders`` under the
  current directory); relative ``out_dir`` / ``out_root`` flow parameters resolve against it.

Paths are compared after resolving ``..`` and symbolic links (of the path and of the roots). The
refusal names the path as it was given and the setting, and reads the same whether or not the path
exists, so it does not tell whether a file outside the roots exists.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pytti_engine.errors import PyttiError

INPUT_ROOTS_ENV = "PYTTI_ALLOWED_INPUT_ROOTS"
OUTPUT_ROOTS_ENV = "PYTTI_ALLOWED_OUTPUT_ROOTS"
RENDERS_ROOT_ENV = "PYTTI_RENDERS_ROOT"
DEFAULT_RENDERS_ROOT = "renders"
EXCERPT_CHARS = 40


class ConfinementError(PyttiError):
    """A path lies outside the allowed input or output roots."""


def _lexical(path: Path) -> Path:
    """``path`` made absolute with ``..`` folded, *without* following links (safe to print)."""
    return Path(os.path.abspath(path.expanduser()))


def real_path(path: str | Path) -> Path:
    """``path`` with ``~``, ``..`` and every symbolic link resolved (the path need not exist)."""
    return Path(os.path.realpath(Path(path).expanduser()))


@dataclass(frozen=True)
class Roots:
    """Folders a render may use, as read from ``setting``.

    Args:
        setting: the environment variable (or ``pytti serve`` option) the roots came from.
        roots: the folders, with links resolved.
    """

    setting: str
    roots: tuple[Path, ...]

    @classmethod
    def parse(cls, setting: str, value: str) -> Roots | None:
        """Roots from a colon-separated list; ``None`` when it names no folder (not confined)."""
        folders = [part.strip() for part in value.split(os.pathsep) if part.strip()]
        if not folders:
            return None
        return cls(setting, tuple(real_path(f) for f in folders))

    @classmethod
    def from_env(cls, setting: str, environ: Mapping[str, str] | None = None) -> Roots | None:
        """The roots in environment variable ``setting``, or ``None`` when it is unset or empty."""
        env = os.environ if environ is None else environ
        return cls.parse(setting, env.get(setting, ""))

    def allows(self, path: str | Path) -> bool:
        """True when ``path`` (links and ``..`` resolved) is one of the roots or inside one."""
        real = real_path(path)
        return any(real == root or root in real.parents for root in self.roots)

    def check(self, path: str | Path, what: str) -> Path:
        """Refuse ``path`` unless it lies inside the roots; returns it made absolute.

        Args:
            path: the path as the user gave it (absolute, or relative to the current folder).
            what: what it is, for the message (``out_dir``, ``init_image``, ``scene file``).

        Raises:
            ConfinementError: naming the path as given and the setting (never where a link points).
        """
        if not self.allows(path):
            shown = ":".join(str(r) for r in self.roots)
            raise ConfinementError(
                f"{what} {_lexical(Path(path))} is outside the allowed folders "
                f"({self.setting}={shown}); use a path inside them"
            )
        return _lexical(Path(path))


def input_roots(environ: Mapping[str, str] | None = None) -> Roots | None:
    """``PYTTI_ALLOWED_INPUT_ROOTS`` (``None``: reading is not confined)."""
    return Roots.from_env(INPUT_ROOTS_ENV, environ)


def output_roots(environ: Mapping[str, str] | None = None) -> Roots | None:
    """``PYTTI_ALLOWED_OUTPUT_ROOTS`` (``None``: writing is not confined)."""
    return Roots.from_env(OUTPUT_ROOTS_ENV, environ)


def check_input(path: str | Path, what: str, roots: Roots | None) -> None:
    """Refuse an input path outside ``roots`` (no-op when ``roots`` is ``None``)."""
    if roots is not None:
        roots.check(path, what)


def check_output(
    path: str | Path, what: str = "run directory", environ: Mapping[str, str] | None = None
) -> None:
    """Refuse a run directory outside ``PYTTI_ALLOWED_OUTPUT_ROOTS`` (when it is set)."""
    roots = output_roots(environ)
    if roots is not None:
        roots.check(path, what)


def renders_root(environ: Mapping[str, str] | None = None) -> Path:
    """Where default run directories go: ``PYTTI_RENDERS_ROOT``, else ``renders`` (absolute)."""
    env = os.environ if environ is None else environ
    return _lexical(Path(env.get(RENDERS_ROOT_ENV, "").strip() or DEFAULT_RENDERS_ROOT))


def under_renders_root(path: str | Path, environ: Mapping[str, str] | None = None) -> Path:
    """``path`` if absolute, else resolved against the renders root (flow parameters from the UI/API)."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else renders_root(environ) / p


def excerpt(text: str, limit: int = EXCERPT_CHARS) -> str:
    """At most ``limit`` characters of ``text`` (one line), with ``…`` when cut: for quoting user files."""
    line = text.replace("\r", " ").replace("\n", " ")
    return line if len(line) <= limit else line[: limit - 1] + "…"
