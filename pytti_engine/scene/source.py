"""Source positions for scene text: where in which file a character of a value came from.

The YAML loader wraps every string scalar in a :class:`SourceText`, a ``str`` that can map an offset
inside itself back to ``FILE:LINE:COL``. Expression and prompt compilers use it to point at the exact
character that is wrong, and compiled expressions keep a :class:`SourceRef` so that an error found while
planning frame 300 still names the line in the file.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pytti_engine.errors import SceneError


@dataclass(frozen=True)
class SourceRef:
    """A position in a scene source: the file (or ``<--set>``), 1-based line and column."""

    path: str
    line: int | None = None
    col: int | None = None

    def shifted(self, offset: int) -> SourceRef:
        """The position ``offset`` characters further along the same line."""
        if self.col is None:
            return self
        return SourceRef(self.path, self.line, self.col + offset)

    def error(self, message: str) -> SceneError:
        """A :class:`SceneError` at this position."""
        return SceneError(self.path, self.line, self.col, message)


@dataclass(frozen=True)
class _Piece:
    start: int  # offset in the joined text where this piece begins
    ref: SourceRef | None  # where the piece's first character is
    exact: bool  # True when columns advance one per character (single-line scalar)


class SourceText(str):
    """A ``str`` that remembers where each of its characters came from.

    Example:
        >>> s = SourceText.at("sin(t)", SourceRef("a.yaml", 3, 10))
        >>> s.locate(4)
        SourceRef(path='a.yaml', line=3, col=14)
    """

    _pieces: tuple[_Piece, ...]

    def __new__(cls, text: str, pieces: Sequence[_Piece] = ()) -> SourceText:
        obj = super().__new__(cls, text)
        obj._pieces = tuple(pieces)
        return obj

    @classmethod
    def at(cls, text: str, ref: SourceRef, *, exact: bool = True) -> SourceText:
        """A text whose first character is at ``ref`` (columns exact when ``exact``)."""
        return cls(text, (_Piece(0, ref, exact),))

    @classmethod
    def concat(cls, parts: Sequence[str]) -> SourceText:
        """Concatenate strings, keeping the source positions of those that are :class:`SourceText`."""
        pieces: list[_Piece] = []
        offset = 0
        for part in parts:
            if isinstance(part, SourceText):
                pieces.extend(_Piece(offset + p.start, p.ref, p.exact) for p in part._pieces)
            elif part:
                pieces.append(_Piece(offset, None, False))
            offset += len(part)
        return cls("".join(parts), pieces)

    def locate(self, offset: int) -> SourceRef | None:
        """The source position of the character at ``offset`` (clamped into the text)."""
        best: _Piece | None = None
        for piece in self._pieces:
            if piece.start > offset:
                break
            best = piece
        if best is None or best.ref is None:
            return None  # the character came from a string without a position
        return best.ref.shifted(offset - best.start) if best.exact else best.ref


def locate(text: str, offset: int) -> SourceRef | None:
    """:meth:`SourceText.locate` for any string (plain strings have no position)."""
    return text.locate(offset) if isinstance(text, SourceText) else None
