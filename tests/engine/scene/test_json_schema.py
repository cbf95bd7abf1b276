"""The generated JSON Schema, the committed copy, and the scene-format documentation."""

from __future__ import annotations

import re
import typing
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from pytti_engine.scene import Scene
from pytti_engine.scene.json_schema import scene_json_schema, scene_json_schema_text

ROOT = Path(__file__).resolve().parents[3]
SCHEMA_FILE = ROOT / "scenes" / "scene.schema.json"
DOC = ROOT / "docs" / "scene-format.md"


def test_committed_schema_is_up_to_date() -> None:
    assert SCHEMA_FILE.read_text(encoding="utf-8") == scene_json_schema_text(), (
        "regenerate it: pytti schema > scenes/scene.schema.json"
    )


def test_schema_describes_every_key_with_defaults() -> None:
    schema = scene_json_schema()
    assert schema["$schema"].endswith("2020-12/schema")
    assert schema["additionalProperties"] is False and schema["required"] == ["scenes"]
    props = schema["properties"]
    assert set(props) == set(Scene.model_fields)
    assert props["zoom"]["default"] == 1.0 and props["width"]["default"] == 256
    assert props["animation"]["enum"] == ["off", "2d", "3d", "video"]
    assert {"type": "number"} in props["translate_x"]["anyOf"]
    stage = schema["$defs"]["Stage"]
    assert stage["oneOf"] == [{"required": ["frames"]}, {"required": ["seconds"]}]
    assert stage["additionalProperties"] is False


jsonschema = pytest.importorskip("jsonschema")


@pytest.mark.parametrize(
    ("data", "valid"),
    [
        ({"scenes": [{"prompts": "a:1", "frames": 3}]}, True),
        ({"scenes": [{"prompts": ["a", "b:2"], "seconds": 1.5}], "zoom": "0:(1), 9:(2)"}, True),
        ({"scenes": [{"prompts": "a", "frames": 3, "seconds": 1}]}, False),
        ({"scenes": [{"prompts": "a"}]}, False),
        ({"scenes": [{"prompts": "a", "frames": 1}], "widht": 5}, False),
        ({"scenes": [{"prompts": "a", "frames": 1}], "width": 8}, False),
        ({"scenes": [{"prompts": "a", "frames": 1}], "animation": "4d"}, False),
        ({"width": 64}, False),
    ],
)
def test_schema_accepts_and_rejects_like_the_loader(data: dict[str, Any], valid: bool) -> None:
    errors = list(jsonschema.Draft202012Validator(scene_json_schema()).iter_errors(data))
    assert (not errors) == valid, errors


def test_bundled_scenes_match_the_schema() -> None:
    validator = jsonschema.Draft202012Validator(scene_json_schema())
    scenes = sorted((ROOT / "scenes").glob("*.yaml"))
    for path in scenes:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        assert not list(validator.iter_errors(data)), path


def _nested_models() -> list[tuple[type[BaseModel], str]]:
    """Every model reachable from Scene, with the section of docs/scene-format.md that documents it.

    The top level is the "## Keys" table; a model under key K (a mapping or a list of mappings) is
    documented in the first heading that names `K` in backticks.
    """
    found: list[tuple[type[BaseModel], str]] = [(Scene, r"^## Keys$")]
    for name, field in Scene.model_fields.items():
        for model in _models_in(field.annotation):
            found.append((model, rf"^#+ .*`{name}`.*$"))
    return found


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _models_in(arg)]


def _table_rows(section: str) -> dict[str, str]:
    text = DOC.read_text(encoding="utf-8")
    heading = re.search(section, text, re.M)
    assert heading is not None, f"docs/scene-format.md has no section matching {section!r}"
    body = text[heading.end() :].split("\n#", 1)[0]
    return {
        m.group(1): m.group(2)
        for m in re.finditer(r"^\| `([a-z_0-9]+)` \|(?:[^|\\]|\\.)*\| ((?:[^|\\]|\\.)*) \|", body, re.M)
    }


@pytest.mark.parametrize(
    ("model", "section"), _nested_models(), ids=[m.__name__ for m, _ in _nested_models()]
)
def test_docs_document_every_key_with_its_default(model: type[BaseModel], section: str) -> None:
    rows = _table_rows(section)
    missing = sorted(set(model.model_fields) - set(rows))
    assert not missing, f"document these {model.__name__} keys in docs/scene-format.md: {missing}"
    assert not sorted(set(rows) - set(model.model_fields)), "documented keys that do not exist"
    for name, field in model.model_fields.items():
        if field.is_required():
            continue
        default = field.default
        shown = rows[name]
        if isinstance(default, bool):
            assert f"`{str(default).lower()}`" in shown, (name, shown)
        elif isinstance(default, int | float):
            assert re.search(rf"`{default:g}(\.0)?`", shown), (name, shown)
        elif isinstance(default, str) and default:
            assert f"`{default}`" in shown, (name, shown)
