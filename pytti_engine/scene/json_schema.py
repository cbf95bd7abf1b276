"""The JSON Schema of the scene file, generated from the pydantic models.

``scenes/scene.schema.json`` is this schema (``pytti schema > scenes/scene.schema.json``; a test keeps
them equal). Editors with a YAML language server autocomplete a scene file that starts with
``# yaml-language-server: $schema=scene.schema.json``.
"""

from __future__ import annotations

import json
from typing import Any

from pytti_engine.scene.schema import Scene

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def scene_json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a scene file."""
    schema = Scene.model_json_schema(mode="validation")
    schema["title"] = "PyTTI-Flow scene"
    return {"$schema": SCHEMA_DIALECT, **schema}


def scene_json_schema_text() -> str:
    """:func:`scene_json_schema` as indented JSON text with a final newline."""
    return json.dumps(scene_json_schema(), indent=2, ensure_ascii=False) + "\n"
