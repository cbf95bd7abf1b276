"""The plan as a chart: every value that changes over time, one line each, grouped by unit.

Shared by the render's "plan" artifact and ``pytti plan --plot``. matplotlib is an optional extra
(``pip install 'pytti-flow[charts]'``), imported when a chart is drawn (never at import time), with the
non-interactive Agg back-end; without it the artifact says how to get the chart and the render goes on.
"""

import base64
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pytti_engine.scene.plan import Plan
from pytti_engine.scene.report import plan_columns

PANELS = (
    ("translate", "translate (px/frame; 3D: units/frame)"),
    ("rotate", "rotate (degrees/frame)"),
    ("zoom", "zoom (scale per frame)"),
    ("weight[", "prompt weight"),
    ("stop[", "prompt stop"),
    ("stabilization", "stabilization weight"),
    ("bands", "audio band (0 to 1)"),
)
"""Column-name prefix → panel title with its unit (the y axis). Anything else goes to "other"."""


@dataclass(frozen=True)
class Series:
    """One plan column that changes over the render."""

    name: str
    values: tuple[float, ...]


def varying_series(plan: Plan) -> tuple[list[Series], list[int]]:
    """The plan's columns that change over time, and the first frame of every scene after the first."""
    table = plan_columns(plan)
    series = []
    for i, name in enumerate(table.names):
        if name in ("frame", "t", "scene"):
            continue
        values = tuple(
            float(v) if isinstance(v, int | float) else math.nan for v in (r[i] for r in table.rows)
        )
        finite = [v for v in values if not math.isnan(v)]
        if len(finite) > 1 and max(finite) != min(finite):
            series.append(Series(name, values))
    scene = [row[2] for row in table.rows]
    starts = [int(str(table.rows[k][0])) for k in range(1, len(scene)) if scene[k] != scene[k - 1]]
    return series, starts


def _panel_of(name: str) -> str:
    for prefix, title in PANELS:
        if name.startswith(prefix):
            return title
    return "other"


def plan_chart_png(plan: Plan, *, width_in: float = 10.0, dpi: int = 80) -> bytes | None:
    """A PNG chart of every time-varying plan value, or ``None`` when nothing varies.

    One panel per unit (translate px/frame, rotate degrees/frame, zoom, prompt weights and stops, ...),
    one line per value, x axis in frames with seconds on top, dashed lines where a scene starts.
    """
    series, starts = varying_series(plan)
    if not series:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels: dict[str, list[Series]] = {}
    for s in series:
        panels.setdefault(_panel_of(s.name), []).append(s)
    frames = [f.index for f in plan.frames]
    fig, axes = plt.subplots(
        len(panels), 1, sharex=True, figsize=(width_in, 0.6 + 2.0 * len(panels)), squeeze=False
    )
    for axis, (title, group) in zip(axes[:, 0], panels.items(), strict=True):
        _draw_panel(axis, frames, group, starts, title)
    bottom = axes[-1, 0]
    bottom.set_xlabel("frame")
    seconds = _seconds_per_frame(plan)
    if seconds:
        top = axes[0, 0].secondary_xaxis(
            "top", functions=(lambda f: (f - 1) * seconds, lambda t: t / seconds + 1)
        )
        top.set_xlabel("time (s)")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    return buf.getvalue()


CHARTS_MISSING = (
    "The plan chart needs matplotlib, which is not installed: pip install 'pytti-flow[charts]' "
    "(the plan table artifact has the same values).\n"
)


def plan_chart_markdown(plan: Plan) -> str:
    """The markdown body of the plan-chart artifact: an inline PNG, or a sentence saying why there is none.

    Never raises for a missing matplotlib (an optional extra): the sentence says how to install it.
    """
    try:
        png = plan_chart_png(plan)
    except ImportError:
        return CHARTS_MISSING
    if png is None:
        return "Nothing in the plan changes over time (no camera motion, constant prompt weights).\n"
    return f"![plan chart](data:image/png;base64,{base64.b64encode(png).decode()})\n"


def _draw_panel(axis: Any, frames: Sequence[int], group: list[Series], starts: list[int], title: str) -> None:
    for s in group:
        label = s.name if len(s.name) <= 40 else s.name[:39] + "…"
        axis.plot(frames, s.values, label=label, linewidth=1.6)
    for k, start in enumerate(starts, start=2):
        axis.axvline(start, color="#888888", linestyle="--", linewidth=1)
        axis.annotate(
            f"scene {k}",
            (start, 1),
            xycoords=("data", "axes fraction"),
            fontsize=8,
            color="#555555",
            xytext=(3, -10),
            textcoords="offset points",
        )
    axis.set_ylabel(title.replace(" (", "\n("), fontsize=9)
    axis.grid(True, alpha=0.3)
    axis.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)


def _seconds_per_frame(plan: Plan) -> float | None:
    if len(plan.frames) < 2:
        return None
    step = plan.frames[1].t - plan.frames[0].t
    return step if step > 0 else None
