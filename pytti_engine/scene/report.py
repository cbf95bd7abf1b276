"""Tabular views of a :class:`~pytti_engine.scene.plan.Plan`: columns, CSV, a compact text table, a summary.

``pytti plan`` and ``pytti validate`` print these; they read the same plan the renderer consumes.
Prompt columns are keyed by the prompt's text (plus its mask, when it has one), in order of first
appearance, so one prompt's weight is one column across scenes and transitions.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass, fields

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
    """Every resolved value of every frame: frame, t, scene, camera, then each prompt's weight and stop.

    The 2D motion columns are always there; other camera values of :class:`FramePlan` (3D, per-axis
    zoom, stabilization weights) get a column only when some frame moves them off their default.
    """
    keys: dict[str, bool] = {}  # prompt key -> has a stop somewhere
    for frame in plan.frames:
        for prompt in frame.prompts:
            keys[prompt_key(prompt)] = keys.get(prompt_key(prompt), False) or prompt.stop is not None
    camera = _camera_columns(plan)
    names = ["frame", "t", "scene", *MOTION_KEYS, *camera]
    for key, has_stop in keys.items():
        names.append(f"weight[{key}]")
        if has_stop:
            names.append(f"stop[{key}]")
    rows = tuple(_row(frame, camera, keys) for frame in plan.frames)
    return PlanColumns(tuple(names), rows)


_NOT_CAMERA = frozenset({"index", "t", "scene_index", "prompts", *MOTION_KEYS})


def _flat_camera(frame: FramePlan) -> dict[str, float]:
    """The frame's extra camera values flattened to ``name`` / ``name[i]`` / ``name[key]`` columns."""
    out: dict[str, float] = {}
    for f in fields(frame):
        if f.name in _NOT_CAMERA:
            continue
        value = getattr(frame, f.name)
        if isinstance(value, int | float) and not isinstance(value, bool):
            out[f.name] = value
        elif isinstance(value, tuple):
            for i, item in enumerate(value):
                if isinstance(item, tuple) and len(item) == 2:  # (name, value) pairs
                    out[f"{f.name}[{item[0]}]"] = item[1]
                elif isinstance(item, int | float):
                    out[f"{f.name}[{i}]"] = item
    return out


def _camera_columns(plan: Plan) -> dict[str, float]:
    """Extra camera columns that some frame uses, with the value a frame has when it does not."""
    defaults: dict[str, float] = {}
    first = _flat_camera(FramePlan(0, 0.0, 0, (), 0.0, 0.0, 0.0, 1.0))
    for frame in plan.frames:
        for name, value in _flat_camera(frame).items():
            if name not in defaults and value != first.get(name, 0.0):
                defaults[name] = first.get(name, 0.0)
    return defaults


def _row(frame: FramePlan, camera: dict[str, float], keys: dict[str, bool]) -> tuple[Cell, ...]:
    values: dict[str, PromptValue] = {}
    flat = _flat_camera(frame) if camera else {}
    for prompt in frame.prompts:
        key = prompt_key(prompt)
        if key in values:  # the same prompt twice in one frame (a transition): weights add up
            old = values[key]
            prompt = PromptValue(old.text, old.weight + prompt.weight, old.stop, old.image, old.mask)
        values[key] = prompt
    row: list[Cell] = [frame.index, frame.t, frame.scene_index, *(getattr(frame, k) for k in MOTION_KEYS)]
    row += [flat.get(name, default) for name, default in camera.items()]
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
    writer.writerows(
        ["" if v is None else repr(v) if isinstance(v, float) else v for v in row] for row in table.rows
    )
    return out.getvalue()


def _fmt(value: Cell) -> str:
    if value is None:
        return "-"
    if isinstance(value, int):
        return str(value)
    return f"{0.0 if abs(value) < 1e-12 else value:.4g}"  # no 2.4e-16 noise from sin(pi)


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


def plan_table(plan: Plan, *, max_rows: int = 60) -> str:
    """A compact text table: constant columns are listed once above it, long plans are sampled.

    Varying prompt columns are headed ``w1``, ``stop1``, ... with a legend line naming each prompt.

    Args:
        plan: the plan.
        max_rows: show at most about this many frames (scene starts and the last frame always).

    Returns:
        The table, lines joined by newlines (no trailing newline).
    """
    table = plan_columns(plan)
    varying = [i for i in range(len(table.names)) if i < 3 or len({r[i] for r in table.rows}) > 1]
    constant = [i for i in range(len(table.names)) if i not in varying]
    numbers = {n[len("weight[") : -1]: j for j, n in enumerate(_prompt_names(table.names), start=1)}
    lines = []
    if constant:
        lines.append("constant: " + ", ".join(f"{table.names[i]}={_fmt(table.rows[0][i])}" for i in constant))
    shown = {table.names[i] for i in varying}
    lines += [f"w{j}: {key}" for key, j in numbers.items() if f"weight[{key}]" in shown]
    headers = [_header(table.names[i], numbers) for i in varying]
    rows = _pick_rows(plan, max_rows)
    cells = [[_fmt(table.rows[r][i]) for i in varying] for r in rows]
    gap = 3 if len(rows) < len(plan.frames) else 0  # room for the "..." of skipped rows
    widths = [max(len(h), gap, *(len(c[j]) for c in cells)) for j, h in enumerate(headers)]
    lines.append("  ".join(h.rjust(w) for h, w in zip(headers, widths, strict=True)))
    previous = -1
    for r, row in zip(rows, cells, strict=True):
        if r != previous + 1:
            lines.append("  ".join("...".rjust(w) for w in widths))
        lines.append("  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)))
        previous = r
    return "\n".join(lines)


def _prompt_names(names: Sequence[str]) -> list[str]:
    return [n for n in names if n.startswith("weight[")]


def _header(name: str, numbers: dict[str, int]) -> str:
    for prefix, short in (("weight[", "w"), ("stop[", "stop")):
        if name.startswith(prefix):
            return f"{short}{numbers[name[len(prefix) : -1]]}"
    return name


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
        *([f"{scene.pre_animation_steps} pre-animation steps"] if scene.pre_animation_steps else []),
        *extra,
    ]
    return "ok: " + ", ".join(parts)
