"""What a render shows in Prefect: progress, the latest frame, a contact sheet, tables, the manifest."""

import base64
import io
import json
from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageDraw
from prefect import task
from prefect.artifacts import (
    create_link_artifact,
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)

from pytti_engine.io import atomic_write_bytes, atomic_write_text
from pytti_engine.manifest import build_manifest, manifest_metadata
from pytti_engine.scene.report import plan_columns
from tasks.records import FrameRecord, RunRef
from tasks.resident import job_for

THUMB = 96


def _slug(run: RunRef) -> str:
    """Artifact keys allow lowercase letters, digits and dashes only."""
    stem = "".join(c if c.isalnum() else "-" for c in run.video_stem.lower()).strip("-") or "scene"
    return stem[:40]


def _data_uri(image: Image.Image) -> str:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _thumb(path: Path) -> Image.Image:
    with Image.open(path) as im:
        im = im.convert("RGB")
        im.thumbnail((THUMB, THUMB))
        return im


def start_progress(run: RunRef) -> str:
    """A progress artifact for this render (0 %)."""
    return str(
        create_progress_artifact(0.0, key=f"{_slug(run)}-progress", description=f"frames of {run.video_stem}")
    )


def frame_done_update(run: RunRef, progress_id: str, record: FrameRecord, every: int) -> None:
    """Advance the progress bar; every ``every`` frames publish the latest frame and a contact sheet."""
    update_progress_artifact(progress_id, 100.0 * record.index / run.frame_count)
    if record.index % every and record.index != run.frame_count:
        return
    sheet = contact_sheet(run, record.index)
    latest = _thumb(Path(record.png))
    create_markdown_artifact(
        f"### {run.video_stem}: frame {record.index}/{run.frame_count}\n\n"
        f"![frame {record.index}]({_data_uri(latest)})\n\n"
        f"loss {record.loss if record.loss is not None else '-'} · `{record.png}`\n\n"
        f"#### Contact sheet\n\n![contact sheet]({_data_uri(sheet)})\n",
        key=f"{_slug(run)}-latest",
        description="latest frame and contact sheet",
    )


def contact_sheet(run: RunRef, upto: int, columns: int = 4, count: int = 12) -> Image.Image:
    """Thumbnails of up to ``count`` frames spread over 1..upto, also saved as ``contact-sheet.png``."""
    paths = job_for(run).paths
    picks = sorted({1 + round(i * (upto - 1) / max(1, count - 1)) for i in range(count)}) if upto > 1 else [1]
    thumbs = [_thumb(paths.frame_png(i)) for i in picks]
    w, h = thumbs[0].size
    rows = -(-len(thumbs) // columns)
    sheet = Image.new("RGB", (columns * w, rows * h), "black")
    for n, thumb in enumerate(thumbs):
        sheet.paste(thumb, ((n % columns) * w, (n // columns) * h))
    buf = io.BytesIO()
    sheet.save(buf, format="PNG")
    atomic_write_bytes(paths.root / "contact-sheet.png", buf.getvalue())
    return sheet


@task(name="write-manifest", persist_result=False)
def write_manifest_task(run: RunRef) -> dict[str, str]:
    """Write ``manifest.json``; return the MP4 metadata that carries its compact copy."""
    job = job_for(run)
    run_info = json.loads(job.paths.run_json.read_text())
    s = job.scene
    scene_facts = {
        "title": s.title,
        "seed": s.seed,
        "width": s.width,
        "height": s.height,
        "fps": s.fps,
        "steps_per_frame": s.steps_per_frame,
        "frames": run.frame_count,
        "scene_sha256": run.scene_sha256,
    }
    manifest = build_manifest(job.paths, run_info, scene_facts, run.frame_count)
    atomic_write_text(job.paths.manifest_json, json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return manifest_metadata(manifest)


CURVE_COLOURS = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#9a6324"]


def plan_curves(run: RunRef, width: int = 640, row_height: int = 54) -> Image.Image | None:
    """Small multiples of every plan column that changes over time (one strip each), or ``None``."""
    table = plan_columns(job_for(run).plan)
    series = []
    for i, name in enumerate(table.names):
        if name in ("frame", "t", "scene"):
            continue
        values = [row[i] for row in table.rows]
        nums = [float(v) if isinstance(v, int | float) else float("nan") for v in values]
        finite = [v for v in nums if v == v]
        if len(finite) > 1 and max(finite) != min(finite):
            series.append((name, nums, min(finite), max(finite)))
    if not series:
        return None
    chart = Image.new("RGB", (width, row_height * len(series)), "white")
    draw = ImageDraw.Draw(chart)
    for k, (name, nums, lo, hi) in enumerate(series[:12]):
        top = k * row_height
        draw.line([(0, top + row_height - 1), (width, top + row_height - 1)], fill="#dddddd")
        points = [
            (
                i * (width - 1) / max(1, len(nums) - 1),
                top + 14 + (row_height - 20) * (1 - (v - lo) / (hi - lo)),
            )
            for i, v in enumerate(nums)
            if v == v
        ]
        draw.line(points, fill=CURVE_COLOURS[k % len(CURVE_COLOURS)], width=2)
        draw.text((4, top + 1), f"{name}  [{lo:g} .. {hi:g}]", fill="black")
    return chart


def publish_plan_curves(run: RunRef) -> None:
    """A markdown artifact with the plan's time-varying values drawn as curves."""
    chart = plan_curves(run)
    if chart is not None:
        create_markdown_artifact(
            f"### Plan of {run.video_stem}\n\n![plan curves]({_data_uri(chart)})\n",
            key=f"{_slug(run)}-plan-curves",
            description="every value of the plan that varies over time, per frame",
        )


def publish_summary(
    run: RunRef, records: Sequence[FrameRecord], video: str, plan_rows: list[dict[str, object]]
) -> None:
    """Table artifacts of per-frame losses/timings and of the plan, and a link to the video."""
    slug = _slug(run)
    create_table_artifact(
        [
            {
                "frame": r.index,
                "loss": r.loss,
                "seconds": round(r.seconds, 3),
                "kept": r.skipped,
                "sha256": r.png_sha256[:12],
            }
            for r in records
        ],
        key=f"{slug}-frames",
        description="per-frame loss and timing",
    )
    create_table_artifact(plan_rows, key=f"{slug}-plan", description="the plan: resolved values per frame")
    create_link_artifact(Path(video).resolve().as_uri(), link_text=Path(video).name, key=f"{slug}-video")
