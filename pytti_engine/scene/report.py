"""Tabular views of a :class:`~pytti_engine.scene.plan.Plan`: columns, CSV, a compact text table, a summary.

``pytti plan`` and ``pytti validate`` print these; they read the same plan the renderer consumes.
Prompt columns are keyed by the prompt's text (plus its mask, when it has one), in order of first
appearance, so one prompt's weight is one column across scenes and transitions.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass

from pytti_engine.scene.plan import MOTION_KEYS, FramePlan, Plan, PromptValue
from pytti_engine.scene.schema import Scene

Cell = float | int | None


@dataclass(frozen=True)
class PlanColumns:
    """The plan as a table: one row per frame."""

    names: tuple[str, ...]
    rows: tuple[tuple[Cell, ...], ...]


def prompt_key(prompt: PromptValue) -> str:
    """The column key of a prompt: its text, plus its mask when it has one."""
    if prompt.mask is None:
        return prompt.text
    mask = prompt.mask
    value = ("-" if mask.inverted else "") + mask.value
    return f"{prompt.text}_{value}" if mask.kind in ("position", "text") else f"{prompt.text}_[{value}]"


def plan_columns(plan: Plan) -> PlanColumns:
    """Every resolved value of every frame: frame, t, scene, motion, then each prompt's weight and stop."""
    keys: dict[str, bool] = {}  # prompt key -> has a stop somewhere
    for frame in plan.frames:
        for prompt in frame.prompts:
            keys[prompt_key(prompt)] = keys.get(prompt_key(prompt), False) or prompt.stop is not None
    names = ["frame", "t", "scene", *MOTION_KEYS]
    for key, has_stop in keys.items():
        names.append(f"weight[{key}]")
        if has_stop:
            names.append(f"stop[{key}]")
    rows = tuple(_row(frame, keys) for frame in plan.frames)
    return PlanColumns(tuple(names), rows)


def _row(frame: FramePlan, keys: dict[str, bool]) -> tuple[Cell, ...]:
    values: dict[str, PromptValue] = {}
    for prompt in frame.prompts:
        key = prompt_key(prompt)
        if key in values:  # the same prompt twice in one frame (a transition): weights add up
            old = values[key]
            prompt = PromptValue(old.text, old.weight + prompt.weight, old.stop, old.image, old.mask)
        values[key] = prompt
    row: list[Cell] = [frame.index, frame.t, frame.scene_index, *(getattr(frame, k) for k in MOTION_KEYS)]
    for key, has_stop in keys.items():
        value = values.get(key)
        row.append(None if value is None else value.weight)
        if has_stop:
            row.append(None if value is None else value.stop)
    return tuple(row)


def plan_csv(plan: Plan) -> str:
    """The full plan as CSV (empty cells where a prompt is absent)."""
    table = plan_columns(plan)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(table.names)
    writer.writerows(["" if v is None else repr(v) if isinstance(v, float) else v for v in row] for row in table.rows)
    return out.getvalue()


def _fmt(value: Cell) -> str:
    if value is None:
        return "-"
    if isinstance(value, int):
        return str(value)
    return f"{value:.4g}"


def _pick_rows(plan: Plan, max_rows: int) -> list[int]:
    """Row numbers to show: all when few; else scene starts, the last frame and evenly spaced ones."""
    n = len(plan.frames)
    if n <= max_rows:
        return list(range(n))
    keep = {0, n - 1}
    keep |= {i for i in range(1, n) if plan.frames[i].scene_index != plan.frames[i - 1].scene_index}
    step = max(1, n // max(1, max_rows - len(keep)))
    keep |= set(range(0, n, step))
    return sorted(keep)[: max(max_rows, len(keep))]


def plan_table(plan: Plan, *, max_rows: int = 60, width: int = 14) -> str:
    """A compact text table: constant columns are listed once above it, long plans are sampled.

    Args:
        plan: the plan.
        max_rows: show at most about this many frames (scene starts and the last frame always).
        width: the maximum width of a column header.

    Returns:
        The table, lines joined by newlines (no trailing newline).
    """
    table = plan_columns(plan)
    varying = [i for i in range(len(table.names)) if i < 3 or len({r[i] for r in table.rows}) > 1]
    constant = [i for i in range(len(table.names)) if i not in varying]
    lines = []
    if constant:
        lines.append("constant: " + ", ".join(f"{table.names[i]}={_fmt(table.rows[0][i])}" for i in constant))
    headers = [_short(table.names[i], width) for i in varying]
    rows = _pick_rows(plan, max_rows)
    cells = [[_fmt(table.rows[r][i]) for i in varying] for r in rows]
    widths = [max(len(h), *(len(c[j]) for c in cells)) for j, h in enumerate(headers)]
    lines.append("  ".join(h.rjust(w) for h, w in zip(headers, widths, strict=True)))
    previous = -1
    for r, row in zip(rows, cells, strict=True):
        if r != previous + 1:
            lines.append("  ".join("...".rjust(w) for w in widths))
        lines.append("  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)))
        previous = r
    return "\n".join(lines)


def _short(name: str, width: int) -> str:
    return name if len(name) <= width else name[: width - 2] + "~]"


def summary(scene: Scene, plan: Plan, *, extra: Sequence[str] = ()) -> str:
    """The one-line ``ok: ...`` summary printed by ``pytti validate``."""
    seconds = len(plan.frames) / plan.fps
    parts = [
        f"{len(plan.frames)} frames",
        f"{len(scene.scenes)} scene{'s' if len(scene.scenes) != 1 else ''}",
        f"{seconds:g} s at {plan.fps:g} fps",
        f"{scene.width}x{scene.height}",
        f"animation {scene.animation}",
        f"{len(scene.perceptors)} perceptor{'s' if len(scene.perceptors) != 1 else ''}",
        f"{scene.steps_per_frame} steps/frame",
        *extra,
    ]
    return "ok: " + ", ".join(parts)
