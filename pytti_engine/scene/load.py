"""YAML text -> :class:`Scene`, with every problem reported as ``FILE:LINE:COL: message``.

The YAML is composed into nodes (so each value keeps its position), turned into plain data plus a
:class:`SourceMap` from key paths to positions, patched with ``--set key=value`` overrides, and validated
by the pydantic models. Each pydantic error's ``loc`` is mapped back to the node it came from; all
errors are reported together (:class:`~pytti_engine.errors.SceneErrors`).

YAML dialect: YAML 1.1 as PyYAML reads it, except that only ``true``/``false`` are booleans (``off``,
``no``, ``on``, ``yes`` stay strings, so ``animation: off`` means the string ``"off"``).
"""

from __future__ import annotations

import difflib
import re
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from pytti_engine.confine import excerpt, input_roots
from pytti_engine.errors import SceneError, SceneErrors
from pytti_engine.scene.schema import AudioFilter, Scene, audio_variable_names
from pytti_engine.scene.source import SourceRef, SourceText

Loc = tuple[str | int, ...]
MAX_NODES = 20_000
OVERRIDE_SOURCE = "<--set>"


class _Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 booleans (``off``/``on``/``yes``/``no`` stay strings)."""


_Loader.yaml_implicit_resolvers = {
    key: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
    for key, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
# YAML 1.2 floats without a dot or exponent sign ("1e9", "2E-3"), which YAML 1.1 reads as strings.
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?[0-9]+(?:\.[0-9]*)?[eE][-+]?[0-9]+$"), list("-+0123456789")
)


@dataclass
class SourceMap:
    """Where each value (``values``) and each mapping key (``keys``) of the scene data came from."""

    path: str
    values: dict[Loc, SourceRef] = field(default_factory=dict)
    keys: dict[Loc, SourceRef] = field(default_factory=dict)

    def value_ref(self, loc: Loc) -> SourceRef:
        """The position of the value at ``loc``, or of its nearest enclosing value."""
        for n in range(len(loc), -1, -1):
            ref = self.values.get(loc[:n])
            if ref is not None:
                return ref
        return SourceRef(self.path)

    def key_ref(self, loc: Loc) -> SourceRef:
        """The position of the key that ``loc`` ends with (falls back to its value)."""
        return self.keys.get(loc) or self.value_ref(loc)

    def drop(self, loc: Loc) -> None:
        """Forget the positions at and below ``loc`` (it is being replaced)."""
        for table in (self.values, self.keys):
            for key in [k for k in table if k[: len(loc)] == loc]:
                del table[key]


@dataclass
class SceneSource:
    """Scene data (plain dicts/lists/scalars) with the positions of its parts."""

    data: dict[str, Any]
    marks: SourceMap


def load_scene(path: str | Path, overrides: Sequence[str] = ()) -> Scene:
    """Load and validate a scene file.

    Args:
        path: the scene YAML file; relative paths inside it resolve against its folder.
        overrides: ``key=value`` strings (``perceptors.0.model=ViT-B-16``), applied after the file.

    Returns:
        The validated scene.

    Raises:
        SceneError: a missing/unreadable file, YAML syntax error or invalid value (``SceneErrors`` when
            there are several).
    """
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SceneError(file, None, None, "scene file not found") from None
    except IsADirectoryError:
        raise SceneError(file, None, None, "is a folder, not a scene file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise SceneError(file, None, None, f"cannot read scene file: {e}") from None
    return load_scene_text(text, name=str(file), base_dir=file.resolve().parent, overrides=overrides)


def load_scene_text(
    text: str, *, name: str = "<scene>", base_dir: Path | None = None, overrides: Sequence[str] = ()
) -> Scene:
    """Load and validate scene YAML given as text (the UI's inline editor, tests).

    Args:
        text: the YAML.
        name: the name used in error messages.
        base_dir: folder for relative paths (default: the current folder).
        overrides: ``key=value`` strings applied after the text.

    Returns:
        The validated scene.

    Raises:
        SceneError: as :func:`load_scene`.
    """
    source = parse_scene_yaml(text, name)
    apply_overrides(source, overrides)
    return validate_scene(source, base_dir=base_dir)


def validate_scene(source: SceneSource, *, base_dir: Path | None = None) -> Scene:
    """Validate parsed scene data, mapping every pydantic error to its file position.

    When ``PYTTI_ALLOWED_INPUT_ROOTS`` is set, a path of the scene outside those folders is an error
    (found before the file is looked at).
    """
    # audio band names (issue 7) must be known before the expressions that use them are compiled
    context = {
        "base_dir": (base_dir or Path.cwd()).resolve(),
        "names": audio_variable_names(source.data),
        "input_roots": input_roots(),  # PYTTI_ALLOWED_INPUT_ROOTS: every path of the scene must be inside
    }
    try:
        return Scene.model_validate(source.data, context=context)
    except ValidationError as e:
        raw = e.errors(include_url=False)
        errors = [_scene_error(err, source.marks) for err in raw if not _is_consequence(err, raw)]
    except RecursionError:
        errors = [SceneError(source.marks.path, None, None, "scene is nested too deeply")]
    raise _combine(errors)


def _is_consequence(err: Any, errors: list[Any]) -> bool:
    """An error that only repeats another: a too-short list whose items already failed, or a missing
    key whose pytti-core spelling is there (the unknown-key error says so)."""
    loc = tuple(err["loc"])
    if err["type"] == "missing":
        return any(_renamed_to(tuple(o["loc"])) == loc for o in errors if o["type"] == "extra_forbidden")
    if err["type"] != "too_short":
        return False
    return any(len(o["loc"]) > len(loc) and tuple(o["loc"][: len(loc)]) == loc for o in errors)


def _renamed_to(loc: Loc) -> Loc | None:
    """Where an unknown nested key that is pytti-core's spelling belongs (``None`` if it is not one)."""
    model = _model_at(loc[:-1])
    renamed = PYTTI_NESTED_KEY_NAMES.get(model, {}).get(str(loc[-1])) if model is not None else None
    return (*loc[:-1], renamed) if renamed else None


def _combine(errors: list[SceneError]) -> SceneError:
    unique: dict[str, SceneError] = {}
    for error in errors:
        unique.setdefault(str(error), error)
    ordered = sorted(unique.values(), key=lambda e: (e.path != "<--set>", e.line or 0, e.col or 0))
    return ordered[0] if len(ordered) == 1 else SceneErrors(ordered)


# --- YAML with positions ------------------------------------------------------------------------------


def parse_scene_yaml(text: str, name: str = "<scene>") -> SceneSource:
    """Parse YAML into plain data and a :class:`SourceMap`; the top level must be a mapping."""
    marks = SourceMap(name)
    try:
        loader = _Loader(text)
        try:
            node = loader.get_single_node()
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as e:
        raise yaml_syntax_error(e, name) from None
    except (yaml.YAMLError, RecursionError) as e:
        raise SceneError(name, None, None, f"YAML syntax error: {e}") from None
    if node is None:
        raise SceneError(name, None, None, "the scene file is empty (it needs at least 'scenes:')")
    builder = _Builder(loader, marks)
    data = builder.build(node, ())
    if not isinstance(data, dict):
        ref = marks.value_ref(())
        raise ref.error("a scene file must be a mapping of keys (width: 512, scenes: [...], ...)")
    if data and not any(key in Scene.model_fields for key in data):
        # Not a scene at all (say /etc/shadow): one line, never an echo of the file's lines as keys.
        raise SceneError(
            name,
            None,
            None,
            f"not a scene file: none of its {len(data)} top-level keys is a scene key "
            "(a scene has keys such as width, height, perceptors and scenes)",
        )
    if builder.errors:
        raise _combine(builder.errors)
    return SceneSource(data, marks)


#: PyYAML contexts that name a construct with a start and an end (a quoted string, ``[...]``, ``{...}``,
#: a block scalar): when one of them is broken, where it *starts* is what the user must look at.
_OPENED_CONSTRUCTS = ("while scanning a", "while parsing a flow sequence", "while parsing a flow mapping")
_PLAIN_WORDS = (("flow sequence", "list [...]"), ("flow mapping", "mapping {...}"), ("scalar", "string"))


def yaml_syntax_error(error: yaml.MarkedYAMLError, name: str) -> SceneError:
    """A :class:`SceneError` for a YAML syntax error, located where the broken construct starts.

    PyYAML reports an unterminated quote or bracket at the place it gave up (often the end of the file);
    its ``context_mark`` says where the quote or bracket was opened. That opening is the reported
    position, and the message says where the problem showed. Other errors are reported where found,
    naming the enclosing construct's first line when it is elsewhere.
    """
    problem = error.problem or error.context or "invalid YAML"
    found, opened = error.problem_mark, error.context_mark
    context = (error.context or "").strip()
    if opened is not None and found is not None and context.startswith(_OPENED_CONSTRUCTS):
        what = context.removeprefix("while scanning ").removeprefix("while parsing ")
        for yaml_word, plain in _PLAIN_WORDS:
            what = what.replace(yaml_word, plain)
        message = (
            f"YAML syntax error in {what} that starts here: {problem} "
            f"(at line {found.line + 1}, column {found.column + 1})"
        )
        return SceneError(name, opened.line + 1, opened.column + 1, message)
    mark = found or opened
    line, col = (mark.line + 1, mark.column + 1) if mark is not None else (None, None)
    message = f"YAML syntax error: {problem}"
    if context and opened is not None and line is not None and opened.line + 1 != line:
        message += f" ({context} that starts at line {opened.line + 1})"
    return SceneError(name, line, col, message)


class _Builder:
    """Turns composed YAML nodes into plain data, recording positions; collects key errors."""

    def __init__(
        self, loader: _Loader, marks: SourceMap, line: int | None = None, col_shift: int = 0
    ) -> None:
        self.loader = loader
        self.marks = marks
        self.errors: list[SceneError] = []
        self.count = 0
        self.line = line  # overrides put everything on a fixed "line" (the --set number)
        self.col_shift = col_shift

    def ref(self, node: yaml.Node) -> SourceRef:
        mark = node.start_mark
        line = self.line if self.line is not None else mark.line + 1
        return SourceRef(self.marks.path, line, mark.column + 1 + self.col_shift)

    def build(self, node: yaml.Node, loc: Loc) -> Any:
        self.count += 1
        if self.count > MAX_NODES:
            raise self.ref(node).error(
                f"the scene has more than {MAX_NODES} values (too many repeated aliases?)"
            )
        self.marks.values[loc] = self.ref(node)
        if isinstance(node, yaml.MappingNode):
            return self.mapping(node, loc)
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*loc, i)) for i, item in enumerate(node.value)]
        assert isinstance(node, yaml.ScalarNode)  # the composer makes only these three node kinds
        return self.scalar(node)

    def mapping(self, node: yaml.MappingNode, loc: Loc) -> dict[str, Any]:
        try:
            self.loader.flatten_mapping(node)
        except yaml.MarkedYAMLError as e:
            raise self.ref(node).error(f"YAML error: {e.problem}") from None
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = self.scalar(key_node) if isinstance(key_node, yaml.ScalarNode) else None
            if not isinstance(key, str):
                self.errors.append(self.ref(key_node).error("keys must be plain words (like 'width')"))
                continue
            key = str(key)
            if key in result:
                self.errors.append(self.ref(key_node).error(f"duplicate key '{excerpt(key)}'"))
                continue
            self.marks.keys[(*loc, key)] = self.ref(key_node)
            result[key] = self.build(value_node, (*loc, key))
        return result

    def scalar(self, node: yaml.ScalarNode) -> Any:
        try:
            value = self.loader.construct_object(node, deep=True)
        except yaml.MarkedYAMLError as e:
            raise self.ref(node).error(f"YAML error: {e.problem}") from None
        except (yaml.YAMLError, ValueError, OverflowError) as e:
            raise self.ref(node).error(f"invalid value: {e}") from None
        if not isinstance(value, str):
            return value
        ref = self.ref(node)
        quoted = node.style in ("'", '"')
        single_line = node.start_mark.line == node.end_mark.line and node.style not in ("|", ">")
        if quoted:
            ref = ref.shifted(1)
        return SourceText.at(
            value, ref, exact=single_line and "\\" not in str(node.value) and "''" not in value
        )


# --- --set overrides ------------------------------------------------------------------------------------


def apply_overrides(source: SceneSource, overrides: Sequence[str]) -> None:
    """Apply ``key=value`` overrides in place; values are YAML (``20``, ``ViT-B-16``, ``[1, 2]``).

    Errors are located at ``<--set>:N:COL`` where N is the override's 1-based position.

    Raises:
        SceneError: a malformed override or a path that does not exist.
    """
    for number, item in enumerate(overrides, start=1):
        _apply_override(source, item, number)


def _apply_override(source: SceneSource, item: str, number: int) -> None:
    where = SourceRef(OVERRIDE_SOURCE, number, 1)
    key, sep, value_text = item.partition("=")
    if not sep or not key.strip():
        raise where.error(f"expected key=value, got {item!r}")
    path: list[str | int] = [int(p) if p.isdigit() else p for p in key.strip().split(".")]
    if any(p == "" for p in path):
        raise where.error(f"invalid key {key.strip()!r}")
    parent = _walk(source, path[:-1], where, key)
    value = _parse_override_value(value_text, source.marks, number, len(key) + 1)
    last = path[-1]
    loc = tuple(path)
    if isinstance(parent, list):
        if not isinstance(last, int) or last >= len(parent) + 1:
            raise where.error(f"{key.strip()}: no list item {last!r} (the list has {len(parent)} items)")
        if last == len(parent):
            parent.append(None)
    elif isinstance(parent, dict):
        last = str(last)
        loc = (*loc[:-1], last)
    else:
        parent_key = ".".join(str(p) for p in path[:-1])
        raise where.error(f"{key.strip()}: '{parent_key}' is not a mapping or list")
    source.marks.drop(loc)
    tmp = SourceMap(OVERRIDE_SOURCE)
    builder = _Builder(_Loader(""), tmp, line=number, col_shift=len(key) + 1)
    parent[last] = builder.build(value, loc) if isinstance(value, yaml.Node) else value
    source.marks.values.update(tmp.values)
    source.marks.keys.update(tmp.keys)
    source.marks.keys[loc] = where
    if builder.errors:
        raise _combine(builder.errors)


def _walk(source: SceneSource, path: Sequence[str | int], where: SourceRef, key: str) -> Any:
    node: Any = source.data
    for i, part in enumerate(path):
        dotted = ".".join(str(p) for p in path[: i + 1])
        if isinstance(node, dict):
            if str(part) not in node:
                node[str(part)] = {}
                loc = tuple(str(p) if not isinstance(p, int) else p for p in path[: i + 1])
                source.marks.values[loc] = source.marks.keys[loc] = where
            node = node[str(part)]
        elif isinstance(node, list) and isinstance(part, int):
            if part >= len(node):
                raise where.error(f"{key.strip()}: no list item {dotted} (the list has {len(node)} items)")
            node = node[part]
        else:
            raise where.error(f"{key.strip()}: '{dotted}' is not a mapping or list")
    return node


def _parse_override_value(text: str, marks: SourceMap, number: int, col: int) -> yaml.Node | None:
    try:
        loader = _Loader(text)
        try:
            return loader.get_single_node()
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark
        at = col + (mark.column if mark is not None else 0) + 1
        raise SceneError(OVERRIDE_SOURCE, number, at, f"invalid value: {e.problem}") from None
    except (yaml.YAMLError, RecursionError) as e:
        raise SceneError(OVERRIDE_SOURCE, number, col + 1, f"invalid value: {e}") from None


# --- pydantic errors -> positions ------------------------------------------------------------------------


def _scene_error(err: Any, marks: SourceMap) -> SceneError:
    ctx = err.get("ctx") or {}
    loc: Loc = tuple(ctx.get("loc") or err["loc"])
    dotted = _dotted(loc)
    kind = err["type"]
    if kind == "extra_forbidden":
        ref = marks.key_ref(loc)
        return ref.error(
            f"unknown key '{excerpt(str(loc[-1]))}'{_did_you_mean(loc)}"
            + (f" (in '{_dotted(loc[:-1])}')" if len(loc) > 1 else "")
        )
    if kind == "missing":
        ref = marks.value_ref(loc[:-1])
        where = f" in '{_dotted(loc[:-1])}'" if len(loc) > 1 else ""
        return ref.error(f"missing required key '{loc[-1]}'{where}")
    message = str(ctx["message"]) if kind == "scene_value" and "message" in ctx else _pydantic_message(err)
    if ctx.get("line") is not None:
        ref = SourceRef(str(ctx.get("path", marks.path)), ctx["line"], ctx.get("col"))
    else:
        ref = marks.value_ref(loc)
    return ref.error(f"{dotted}: {message}" if dotted else message)


def _pydantic_message(err: Any) -> str:
    if err["type"] == "path_type":
        return "expected a file path"
    if err["type"] == "model_type":
        return "expected a mapping (key: value, ...)"
    message = (
        str(err["msg"]).removeprefix("Value error, ").replace("valid tuple", "list").replace("Tuple", "List")
    )
    value = err.get("input")
    if err["type"].startswith(
        ("greater", "less", "too_short", "too_long", "int_", "float_", "bool_", "string_")
    ):
        if not isinstance(value, dict | list):
            message += f" (got {_shown(value)})"
    elif err["type"] == "literal_error":
        message += f" (got {_shown(value)})"
    return message


def _shown(value: Any) -> str:
    """A short rendering of a bad value for a message."""
    text = f"'{value}'" if isinstance(value, str) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _dotted(loc: Loc) -> str:
    return ".".join(str(p) for p in loc if isinstance(p, int | str) and _is_key_part(p))


def _is_key_part(part: str | int) -> bool:
    return isinstance(part, int) or ("[" not in part and "-" not in part and "," not in part)


def _did_you_mean(loc: Loc) -> str:
    model = _model_at(loc[:-1])
    if model is None:
        return ""
    renamed = PYTTI_NESTED_KEY_NAMES.get(model, {}).get(str(loc[-1]))
    hint = f"pytti-core's name: did you mean '{renamed}'?" if renamed else None
    if model is Scene:
        hint = PYTTI_KEY_HINTS.get(str(loc[-1]))
    if hint:
        return f" ({hint})"
    close = difflib.get_close_matches(str(loc[-1]), sorted(model.model_fields), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _model_at(loc: Loc) -> type[BaseModel] | None:
    model: type[BaseModel] | None = Scene
    for part in loc:
        if model is None:
            return None
        if isinstance(part, int):
            continue
        info = model.model_fields.get(str(part))
        model = _find_model(info.annotation) if info is not None else None
    return model


def _find_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _find_model(arg)
        if found is not None:
            return found
    return None


#: pytti-core setting names that users will type out of habit -> what to write instead.
_CLIP_FLAG_HINT = (
    "pytti-core's CLIP flag: list models under 'perceptors', e.g. [{model: ViT-B-32, pretrained: openai}]"
)
_OUTPUT_HINT = (
    "pytti-core's output setting: every frame is saved here; choose the folder with 'pytti render --out'"
)
PYTTI_KEY_HINTS: Mapping[str, str] = MappingProxyType(
    {
        "frames_per_second": "pytti-core's name: here it is 'fps'",
        "steps_per_scene": "pytti-core's name: give each scene 'frames' or 'seconds'; see 'pytti import-pytti'",
        "animation_mode": "pytti-core's name: here it is 'animation' (off, 2d, 3d, video)",
        "interpolation_steps": "pytti-core's name: give a scene 'transition_frames'",
        "zoom_x_2d": "pytti-core's name, in pixels per frame: here 'zoom_x' is a scale factor, W / (W - pixels)",
        "zoom_y_2d": "pytti-core's name, in pixels per frame: here 'zoom_y' is a scale factor, H / (H - pixels)",
        "translate_z_3d": "pytti-core's name: here it is 'translate_z'",
        "use_tensorboard": "pytti-core's name: here it is 'tensorboard'",
        **dict.fromkeys(
            ("ViTB32", "ViTB16", "ViTL14", "ViTL14_336px", "RN50", "RN101", "RN50x4", "RN50x16", "RN50x64"),
            _CLIP_FLAG_HINT,
        ),
        **dict.fromkeys(
            ("file_namespace", "allow_overwrite", "save_every", "display_every", "clear_every", "backups"),
            _OUTPUT_HINT,
        ),
        **{
            f"{kind}_stabilization_weight": f"pytti-core's name: here it is 'stabilization: {{{kind}: ...}}'"
            for kind in ("direct", "semantic", "edge", "depth", "flow")
        },
    }
)
#: pytti-core's spelling of keys inside nested entries -> this format's key.
PYTTI_NESTED_KEY_NAMES: Mapping[type[BaseModel], Mapping[str, str]] = MappingProxyType(
    {AudioFilter: MappingProxyType({"variable_name": "name"})}
)
