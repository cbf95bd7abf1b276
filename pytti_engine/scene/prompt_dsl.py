r"""The PyTTI prompt language, parsed once into a typed AST.

Grammar (``prompts`` of one scene; whitespace around every part is ignored)::

    prompts    := prompt { "|" prompt }                 blank prompts are dropped (PyTTI does the same)
    prompt     := target [ ":" weight_part [ ":" stop ] ]
    target     := text                                  a text prompt
                | "[" source "]"                        a semantic image prompt (PNG/JPG path or http(s) URL)
    weight_part:= weight [ "_" mask [ "_" cutoff ] ]
    weight     := expr | "(" keyframes ")"              default 1; negative weights push away
    stop       := expr | "(" keyframes ")"              a gradient gate (see PyTTI); default: none
    mask       := "a"                                   all cutouts (the same as no mask)
                | "l" | "r" | "u" | "d" | "n" | "f"     positional: left, right, up, down, near, far
                | "[" ["-"] image "]"                   image mask ("-" inverts it)
                | "[" ["-"] video "]"                   video mask (.mp4 .mov .webm .mkv .avi), one frame per frame
                | text                                  semantic (text) mask
    cutoff     := expr                                  threshold of positional and text masks

``expr`` and ``keyframes`` are the expression language of :mod:`pytti_engine.scene.expr` (``t`` in
seconds, ``frame``, ...). Escapes in text (target and text masks): ``\:`` ``\|`` ``\_`` ``\[`` ``\]``
``\\``. Colons and pipes inside ``[...]`` need no escape (``[https://x.org/a.png]:2``).

Differences from pytti-core, on purpose:

* an ``_`` inside a weight expression does not start a mask when it is part of a known name
  (``10*fLo_prev`` with an audio band ``fLo_prev``; ``scene_t``) or of a number (``1_000``);
* an empty text (``:1``), a fourth ``:`` field, an empty weight or mask, a cutoff on an image mask and a
  video used as a semantic image prompt are errors instead of crashes or silent surprises;
* there is no magic cutoff sentinel: a text mask without a cutoff is continuous (pytti's default).

Examples::

    parse_prompts("dragon:3_[mask.png]")
      == (PromptSpec(text="dragon", weight=Expr("3"), mask=ImageMask("<abs>/mask.png")),)
    parse_prompts("sky:10*sin(t)_l_0.3 | text:-1:-.9")
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pytti_engine.confine import ConfinementError, Roots, check_input
from pytti_engine.scene.expr import BASE_NAMES, Expr, ExprError, compile_value
from pytti_engine.scene.source import locate

PositionSide = Literal["l", "r", "u", "d", "n", "f"]
VIDEO_SUFFIXES = frozenset({".mp4", ".mov", ".webm", ".mkv", ".avi", ".m4v"})
_ESCAPABLE = frozenset(":|_[]\\")
_IDENT = re.compile(r"[A-Za-z0-9_]")


@dataclass(frozen=True)
class PositionMask:
    """Apply the prompt only to cutouts on one side (``l r u d``) or near/far (``n f``)."""

    side: PositionSide
    cutoff: Expr | None = None


@dataclass(frozen=True)
class TextMask:
    """Apply the prompt where cutouts look like ``text`` (CLIP distance; binary when ``cutoff`` is set)."""

    text: str
    cutoff: Expr | None = None


@dataclass(frozen=True)
class ImageMask:
    """Weight cutouts by the coverage of an image mask (``inverted``: use ``1 - mask``)."""

    path: str
    inverted: bool = False


@dataclass(frozen=True)
class VideoMask:
    """Like :class:`ImageMask`, with the mask taken from a video, one video frame per output frame."""

    path: str
    inverted: bool = False


Mask = PositionMask | TextMask | ImageMask | VideoMask


@dataclass(frozen=True)
class PromptSpec:
    """One parsed prompt.

    Attributes:
        text: the prompt text; for an image prompt, the bracketed source as written (``"[a.png]"``).
        weight: the weight (negative pushes away).
        stop: the stop (gradient gate), or ``None``.
        mask: where the prompt applies, or ``None`` for everywhere.
        image: for a semantic image prompt, the absolute path or URL of the image; otherwise ``None``.
    """

    text: str
    weight: Expr
    stop: Expr | None = None
    mask: Mask | None = None
    image: str | None = None

    def to_source(self) -> str:
        """The prompt in canonical DSL form (parses back to an equal spec)."""
        target = self.text if self.image is not None else escape_text(self.text)
        weight = _expr_source(self.weight)
        mask = "" if self.mask is None else "_" + _mask_source(self.mask)
        stop = "" if self.stop is None else ":" + _expr_source(self.stop)
        return f"{target}:{weight}{mask}{stop}"


class PromptError(ValueError):
    """A problem in a prompt string, at character ``offset``."""

    def __init__(self, message: str, offset: int = 0) -> None:
        super().__init__(message)
        self.message = message
        self.offset = offset


def escape_text(text: str) -> str:
    """Escape a literal prompt text so that it parses back unchanged."""
    out = "".join("\\" + c if c in _ESCAPABLE else c for c in text)
    return out


def _expr_source(expr: Expr) -> str:
    source = str(expr.to_json()) if expr.is_constant else expr.source.strip()
    return f"({source})" if ":" in source and not source.startswith("(") else source


def _mask_source(mask: Mask) -> str:
    if isinstance(mask, PositionMask | TextMask):
        head = mask.side if isinstance(mask, PositionMask) else escape_text(mask.text)
        return head if mask.cutoff is None else f"{head}_{_expr_source(mask.cutoff)}"
    return f"[{'-' if mask.inverted else ''}{mask.path}]"


def parse_prompts(
    text: str,
    *,
    names: Iterable[str] = BASE_NAMES,
    base_dir: Path | None = None,
    check_files: bool = True,
    input_roots: Roots | None = None,
) -> tuple[PromptSpec, ...]:
    """Parse the prompts of one scene.

    Args:
        text: the prompt string (``"a:2 | b:-1:-.9"``); a :class:`SourceText` keeps file positions.
        names: variable names that weight/stop/cutoff expressions may use.
        base_dir: folder against which relative image/mask paths resolve (default: the current folder).
        check_files: raise when a local image or mask file does not exist, or a local video mask is not a
            readable video.
        input_roots: refuse local files outside these folders (before looking at them).

    Returns:
        The prompts, in order; at least one.

    Raises:
        PromptError: with the offset of the problem in ``text``.
    """
    parser = _Parser(text, frozenset(names), base_dir or Path.cwd(), check_files, input_roots)
    specs = tuple(
        parser.prompt(start, end) for start, end in _split(text, "|", 0, len(text)) if text[start:end].strip()
    )
    if not specs:
        raise PromptError("no prompts (write at least one, e.g. 'a lighthouse:1')", 0)
    return specs


def _split(text: str, sep: str, start: int, end: int, *, parens: bool = False) -> Iterator[tuple[int, int]]:
    """Spans between unescaped ``sep`` characters outside ``[...]`` (and ``(...)`` when ``parens``)."""
    depth = 0
    opened: list[int] = []  # offsets of the open "[" (for the error message)
    i = piece = start
    while i < end:
        c = text[i]
        if c == "\\":
            i += 2
            continue
        if c == "[":
            opened.append(i)
        elif c == "]" and opened:
            opened.pop()
        if c in "[(" and (c == "[" or parens):
            depth += 1
        elif c in "])" and (c == "]" or parens) and depth > 0:
            depth -= 1
        elif c == sep and depth == 0:
            yield piece, i
            piece = i + 1
        i += 1
    if opened:
        raise PromptError("unclosed '[' (write '\\[' for a literal bracket)", opened[0])
    yield piece, end


def _unescape(text: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text) and text[i + 1] in _ESCAPABLE:
            out.append(text[i + 1])
            i += 2
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def _trim(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


class _Parser:
    def __init__(
        self, text: str, names: frozenset[str], base_dir: Path, check_files: bool, roots: Roots | None = None
    ) -> None:
        self.text = text
        self.names = names
        self.base_dir = base_dir
        self.check_files = check_files
        self.roots = roots

    def prompt(self, start: int, end: int) -> PromptSpec:
        """``target [":" weight_part [":" stop]]`` in ``text[start:end]``."""
        start, end = _trim(self.text, start, end)
        colon = next((e for s, e in _split(self.text, ":", start, end)), end)
        fields = [(start, colon)]
        if colon < end:
            fields += list(_split(self.text, ":", colon + 1, end, parens=True))
        if len(fields) > 3:
            extra = fields[3][0] - 1
            raise PromptError(
                "too many ':' (a prompt is text:weight:stop; write '\\:' for a colon in text)", extra
            )
        text, image = self.target(*fields[0])
        weight = Expr.constant(1.0)
        mask: Mask | None = None
        if len(fields) > 1:
            weight, mask = self.weight_part(*fields[1])
        stop = self.expr(*fields[2], "stop") if len(fields) > 2 else None
        return PromptSpec(text=text, weight=weight, stop=stop, mask=mask, image=image)

    def target(self, start: int, end: int) -> tuple[str, str | None]:
        start, end = _trim(self.text, start, end)
        raw = self.text[start:end]
        if not raw:
            raise PromptError("empty prompt text before ':'", start)
        if raw.startswith("[") and raw.endswith("]") and not raw.endswith("\\]"):
            source = raw[1:-1].strip()
            if not source:
                raise PromptError("empty image path in '[]'", start)
            if Path(source).suffix.lower() in VIDEO_SUFFIXES:
                raise PromptError(
                    "a video can only be a mask ('text:1_[mask.mp4]'), not an image prompt", start
                )
            return raw, self.resolve(source, start + 1)
        return _unescape(raw), None

    def weight_part(self, start: int, end: int) -> tuple[Expr, Mask | None]:
        split = self.mask_split(start, end)
        weight = self.expr(start, split, "weight")
        if split == end:
            return weight, None
        mask_start = split + 1
        parts = list(_split(self.text, "_", mask_start, end))
        mask_end = parts[0][1]
        cutoff = None
        if len(parts) > 1:
            cutoff = self.expr(mask_end + 1, end, "mask cutoff")
        return weight, self.mask(mask_start, mask_end, cutoff)

    def mask_split(self, start: int, end: int) -> int:
        """The offset of the ``_`` that ends the weight (``end`` if none); see the module docstring."""
        depth = 0
        i = start
        while i < end:
            c = self.text[i]
            if c in "[(":
                depth += 1
            elif c in "])":
                depth = max(0, depth - 1)
            elif c == "_" and depth == 0:
                skip_to = self.name_underscore(i, start, end)
                if skip_to is None:
                    return i
                i = skip_to
                continue
            i += 1
        return end

    def name_underscore(self, i: int, start: int, end: int) -> int | None:
        """``None`` when the ``_`` at ``i`` starts a mask; else the offset to continue scanning from."""
        text = self.text
        lo = i
        while lo > start and _IDENT.match(text[lo - 1]):
            lo -= 1
        hi = i + 1
        while hi < end and _IDENT.match(text[hi]):
            hi += 1
        if lo == i:
            # "sin(t)_l": after a closing bracket a mask starts; elsewhere ("1 + __x") a name does.
            before = text[start:i].rstrip()
            return None if before.endswith((")", "]")) else hi
        word = text[lo:hi]
        if word[0].isdigit():
            digit_separator = text[i - 1].isdigit() and hi > i + 1 and text[i + 1].isdigit()
            return i + 1 if digit_separator else None
        if word in self.names:
            return hi
        # The longest known name that ends at an underscore of this word ends the weight there.
        for j in range(hi - 1, i, -1):
            if text[j] == "_" and text[lo:j] in self.names:
                return j
        return None

    def mask(self, start: int, end: int, cutoff: Expr | None) -> Mask | None:
        start, end = _trim(self.text, start, end)
        raw = self.text[start:end]
        if not raw:
            raise PromptError("empty mask after '_'", start)
        if raw == "a":
            if cutoff is not None:
                raise PromptError("a cutoff has no effect on mask 'a' (all cutouts)", end)
            return None
        if raw in ("l", "r", "u", "d", "n", "f"):
            return PositionMask(raw, cutoff)  # type: ignore[arg-type]
        if raw.startswith("[") and raw.endswith("]"):
            if cutoff is not None:
                raise PromptError("a cutoff has no effect on an image or video mask", end)
            inner = raw[1:-1].strip()
            inverted = inner.startswith("-")
            source = inner[1:].strip() if inverted else inner
            if not source:
                raise PromptError("empty mask path in '[]'", start)
            path = self.resolve(source, start + 1)
            if Path(source).suffix.lower() in VIDEO_SUFFIXES:
                self.check_video(path, source, start + 1)
                return VideoMask(path, inverted)
            return ImageMask(path, inverted)
        return TextMask(_unescape(raw), cutoff)

    def expr(self, start: int, end: int, what: str) -> Expr:
        raw = self.text[start:end]
        if not raw.strip():
            raise PromptError(f"empty {what}", start)
        try:
            return compile_value(raw, names=self.names, ref=locate(self.text, start), offset=start)
        except ExprError as e:
            raise PromptError(f"{what}: {e.message}", start + e.offset) from None

    def check_video(self, path: str, source: str, offset: int) -> None:
        """With ``check_files``, a local video mask must be a readable video (probed with ffmpeg)."""
        if not self.check_files or path.startswith(("http://", "https://")):
            return
        from pytti_engine.errors import PyttiError
        from pytti_engine.video import probe_video

        try:
            probe_video(Path(path))
        except PyttiError as e:
            reason = (str(e).strip().splitlines() or ["ffmpeg cannot read it"])[-1]  # ffmpeg's last word
            raise PromptError(
                f"video mask {source} is not a readable video ({path}): {reason}", offset
            ) from None

    def resolve(self, source: str, offset: int) -> str:
        if source.startswith(("http://", "https://")):
            return source
        path = Path(source).expanduser()
        if not path.is_absolute():
            path = self.base_dir / path
        try:
            check_input(path, "prompt file", self.roots)
        except ConfinementError as e:
            raise PromptError(str(e), offset) from None
        if self.check_files and not path.is_file():
            raise PromptError(f"file not found: {source} (looked for {path})", offset)
        return str(path)
