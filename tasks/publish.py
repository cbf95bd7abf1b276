"""What a render shows in Prefect: progress, the latest frame, a contact sheet, tables, the video.

Every artifact key of a render is ``<scene stem>-<8 hex digits of its run directory>-<kind>``, so
renders of different scenes, or of one scene into different folders, never share a key's history.
The latest frame is one markdown artifact per run, updated in place (frame k/N), not a new card per
update.
"""

import base64
import contextvars
import hashlib
import io
import json
import math
import socket
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple
from uuid import UUID

from PIL import Image
from prefect import task
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)

from pytti_engine.io import atomic_write_bytes, atomic_write_text
from pytti_engine.manifest import build_manifest, manifest_metadata
from tasks.records import FrameRecord, RunRef
from tasks.resident import job_for
from tasks.tolerant import best_effort, run_logger

LATEST_PX = 384
"""The latest frame is shown at most this big (small frames are enlarged, pixels kept sharp)."""
SHEET_PX = 160
"""Contact-sheet thumbnails fit in this square."""
PREVIEW_PX = 256
"""The animated preview of the video fits in this square."""
PREVIEW_BUDGET = 2_000_000
"""At most this many bytes of animated preview go into the video artifact (else fewer frames)."""


class ProgressRef(NamedTuple):
    """The ids of a render's two live artifacts: the progress bar and the latest-frame view."""

    progress: str
    latest: str


def artifact_key(run: RunRef, kind: str) -> str:
    """``<stem>-<8 hex of the run directory>-<kind>``: lowercase letters, digits and dashes only."""
    stem = "".join(c if c.isalnum() else "-" for c in run.video_stem.lower()).strip("-") or "scene"
    digest = hashlib.sha256(str(Path(run.run_dir).resolve()).encode()).hexdigest()[:8]
    return f"{stem[:32].strip('-')}-{digest}-{kind}"


def figure(value: float | None, digits: int = 4) -> float | None:
    """``value`` rounded to ``digits`` significant figures (``None`` stays ``None``)."""
    return None if value is None else float(f"{value:.{digits}g}")


def run_title(run: RunRef) -> str:
    """The scene's ``title``, else its file name stem."""
    return job_for(run).scene.title or run.video_stem


def _data_uri(image: Image.Image, fmt: str = "JPEG") -> str:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **({"quality": 88} if fmt == "JPEG" else {}))
    return f"data:image/{fmt.lower()};base64," + base64.b64encode(buf.getvalue()).decode()


def _fit(path: Path, box: int, enlarge: bool = False, palette: bool = False) -> Image.Image:
    """The image at ``path`` scaled to fit ``box``² (enlarged with sharp pixels when ``enlarge``).

    With ``palette``, an adaptive-palette (``P``) image, reduced to its palette *before* it is
    enlarged: what a GIF encoder would make of the enlarged picture, for a fraction of the work.
    """
    with Image.open(path) as source:
        im: Image.Image = source.convert("RGB")
    scale = box / max(im.size)
    if scale < 1:
        im = im.resize(_scaled(im.size, scale), Image.Resampling.LANCZOS)
    if palette:
        im = im.convert("P", palette=Image.Palette.ADAPTIVE)
    if enlarge and scale >= 2:
        im = im.resize(_scaled(im.size, int(scale)), Image.Resampling.NEAREST)
    return im


def _scaled(size: tuple[int, int], scale: float) -> tuple[int, int]:
    return (max(1, round(size[0] * scale)), max(1, round(size[1] * scale)))


@best_effort("progress artifact")
def start_progress(run: RunRef) -> ProgressRef:
    """The render's progress bar (0 %) and its latest-frame view (waiting for frame 1)."""
    title = run_title(run)
    progress = create_progress_artifact(
        0.0, key=artifact_key(run, "progress"), description=f"{title}: frame 0/{run.frame_count}"
    )
    latest = create_markdown_artifact(
        f"### {title}: waiting for frame 1/{run.frame_count}\n\nrun directory `{run.run_dir}`\n",
        key=artifact_key(run, "latest"),
        description=f"{title}: latest frame 0/{run.frame_count}",
    )
    return ProgressRef(str(progress), str(latest))


PROGRESS_INTERVAL_S = 0.5
"""The progress bar is updated at most this often (the last frame is always shown)."""
VIEW_INTERVAL_S = 5.0
"""The latest-frame view (a contact sheet, a few hundred ms of work) is rebuilt at most this often."""
STOP_JOIN_S = 2.0
"""How long a stopped render (Ctrl-C, SIGTERM) waits for the last progress update to go out."""


class Due(NamedTuple):
    """What a :class:`ProgressPublisher` sends now, and how long it may sleep before checking again."""

    progress: bool
    view: bool
    wait_s: float | None
    """Seconds until a held-back update is due; ``None``: nothing is held back."""


def due_updates(
    shown: int,
    newest: int,
    frames: int,
    view_wanted: bool,
    since_progress_s: float,
    since_view_s: float,
    *,
    closing: bool = False,
    progress_interval_s: float = PROGRESS_INTERVAL_S,
    view_interval_s: float = VIEW_INTERVAL_S,
) -> Due:
    """Which updates are due: the progress bar when a newer frame than ``shown`` is done and
    ``progress_interval_s`` have passed, the latest-frame view when wanted and ``view_interval_s``
    have passed. The last frame, and anything pending when ``closing``, is due at once.

    Args:
        shown: the frame the progress bar shows (0: none yet).
        newest: the newest finished frame (0: none yet).
        frames: the render's frame count.
        view_wanted: a frame asked for the latest-frame view since it was last rebuilt.
        since_progress_s, since_view_s: seconds since the bar / the view was last sent.
    """
    now = closing or newest == frames
    waits: list[float] = []
    progress = newest > shown and (now or since_progress_s >= progress_interval_s)
    if newest > shown and not progress:
        waits.append(progress_interval_s - since_progress_s)
    view = view_wanted and newest > 0 and (now or since_view_s >= view_interval_s)
    if view_wanted and newest > 0 and not view:
        waits.append(view_interval_s - since_view_s)
    return Due(progress, view, max(0.0, min(waits)) if waits else None)


class ProgressPublisher:
    """Shows finished frames in the progress bar and the latest-frame view from a background thread,
    so the frame chain never waits for the Prefect API (an update is a round trip to the server, and
    the view builds a contact sheet).

    The newest frame wins: frames finished while an update is on its way, or within
    :data:`PROGRESS_INTERVAL_S` of the last one, are shown together by the next update. The view is
    rebuilt when a frame asks for it (every ``every`` frames) and :data:`VIEW_INTERVAL_S` have
    passed. Leaving the ``with`` block sends what is pending (the last frame shown) and waits for the
    thread. Publishing is best-effort: a failure is one warning, never the render's.

    Example::

        with ProgressPublisher(run, start_progress(run), every=max(1, n // 8)) as publisher:
            for index in ...:
                publisher.frame_done(record)
    """

    def __init__(
        self,
        run: RunRef,
        ref: ProgressRef | None,
        every: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        join_timeout_s: float = 120.0,
    ) -> None:
        self.run, self.ref, self.every = run, ref, max(1, every)
        self._clock, self._join_timeout_s = clock, join_timeout_s
        self._cond = threading.Condition()
        self._newest: FrameRecord | None = None
        self._view_wanted = False
        self._closing = False
        self._thread: threading.Thread | None = None

    def __enter__(self) -> "ProgressPublisher":
        if self.ref is not None:  # the artifacts could not be created: nothing to update
            context = contextvars.copy_context()  # the flow run's settings (API URL) and logger
            self._thread = threading.Thread(
                target=context.run, args=(self._loop,), name="pytti-progress", daemon=True
            )
            self._thread.start()
        return self

    def frame_done(self, record: FrameRecord) -> None:
        """Queue frame ``record`` for the progress bar (and the view, every ``every`` frames)."""
        with self._cond:
            self._newest = record
            self._view_wanted |= record.index % self.every == 0 or record.index == self.run.frame_count
            self._cond.notify()

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        with self._cond:
            self._closing = True
            self._cond.notify()
        if self._thread is not None:
            # a stop (Ctrl-C, SIGTERM: not an Exception) waits a moment, not for a slow API
            stopping = exc_type is not None and not issubclass(exc_type, Exception)
            self._thread.join(STOP_JOIN_S if stopping else self._join_timeout_s)
            if self._thread.is_alive():
                run_logger().warning(
                    "the progress artifacts did not finish updating: they may show an earlier frame"
                )

    def _loop(self) -> None:
        assert self.ref is not None
        shown, progress_at, view_at = 0, -math.inf, -math.inf
        while True:
            with self._cond:
                while True:
                    newest = self._newest
                    now = self._clock()
                    due = due_updates(
                        shown,
                        newest.index if newest else 0,
                        self.run.frame_count,
                        self._view_wanted,
                        now - progress_at,
                        now - view_at,
                        closing=self._closing,
                    )
                    if due.progress or due.view:
                        self._view_wanted &= not due.view
                        break
                    if self._closing:
                        return
                    self._cond.wait(due.wait_s)
            assert newest is not None
            if due.progress:
                publish_progress(self.run, self.ref, newest)
                shown, progress_at = newest.index, self._clock()
            if due.view:
                publish_latest_view(self.run, self.ref, newest)
                view_at = self._clock()


@best_effort("progress artifact")
def publish_progress(run: RunRef, ref: ProgressRef, record: FrameRecord) -> None:
    """Move the progress bar to frame ``record.index`` of the run."""
    k, n = record.index, run.frame_count
    description = f"{run_title(run)}: {_frame_status(k, n)}"
    update_progress_artifact(UUID(ref.progress), 100.0 * k / n, description=description)


def _frame_status(k: int, n: int) -> str:
    """``frame k/n (p %)``, as the progress bar and the latest-frame view say it."""
    return f"frame {k}/{n} ({100 * k / n:.0f} %)"


@best_effort("latest-frame artifact")
def publish_latest_view(run: RunRef, ref: ProgressRef, record: FrameRecord) -> None:
    """Show frame ``record`` (and the contact sheet up to it) in the latest-frame view."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import ArtifactUpdate

    title = run_title(run)
    markdown = latest_markdown(run, record, title)
    with get_client(sync_client=True) as client:
        client.update_artifact(
            UUID(ref.latest),
            ArtifactUpdate(
                data=markdown, description=f"{title}: latest {_frame_status(record.index, run.frame_count)}"
            ),
        )


def latest_markdown(run: RunRef, record: FrameRecord, title: str) -> str:
    """The latest-frame view: frame k/N with its percentage, the frame, its loss, a contact sheet."""
    k, n = record.index, run.frame_count
    sheet = contact_sheet(run, k)
    latest = _fit(Path(record.png), LATEST_PX, enlarge=True)
    loss = f"loss {figure(record.loss):g}" if record.loss is not None else "loss -"
    state = "kept from an earlier render" if record.skipped else f"{record.seconds:.1f} s"
    return (
        f"### {title}: {_frame_status(k, n)}\n\n"
        f"![frame {k} of {n}]({_data_uri(latest)})\n\n"
        f"{loss} · {state} · `{record.png}`\n\n"
        f"#### Contact sheet, frames 1 to {k}\n\n![contact sheet]({_data_uri(sheet)})\n"
    )


def contact_sheet(run: RunRef, upto: int, columns: int = 4, count: int = 12) -> Image.Image:
    """Thumbnails of up to ``count`` frames spread over 1..upto, also saved as ``contact-sheet.png``."""
    paths = job_for(run).paths
    picks = sorted({1 + round(i * (upto - 1) / max(1, count - 1)) for i in range(count)}) if upto > 1 else [1]
    thumbs = [_fit(paths.frame_png(i), SHEET_PX, enlarge=True) for i in picks]
    w, h = thumbs[0].size
    rows = -(-len(thumbs) // columns)
    sheet = Image.new("RGB", (min(columns, len(thumbs)) * w, rows * h), "black")
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


@best_effort("plan chart artifact")
def publish_plan_curves(run: RunRef) -> None:
    """A markdown artifact with a chart of every plan value that changes over time."""
    from tasks.plan_chart import plan_chart_markdown

    title = run_title(run)
    body = plan_chart_markdown(job_for(run).plan)
    create_markdown_artifact(
        f"### Plan of {title}\n\n{body}",
        key=artifact_key(run, "plan-chart"),
        description=f"{title}: every value that changes over time, per frame",
    )


@best_effort("summary artifacts")
def publish_summary(
    run: RunRef, records: Sequence[FrameRecord], video: str, plan_rows: list[dict[str, object]]
) -> None:
    """Table artifacts of per-frame losses/timings and of the plan, and where the video is."""
    title = run_title(run)
    create_table_artifact(
        [
            {
                "frame": r.index,
                "loss": figure(r.loss),
                "seconds": round(r.seconds, 2),
                "kept": r.skipped,
                "sha256": r.png_sha256[:12],
            }
            for r in records
        ],
        key=artifact_key(run, "frames"),
        description=f"{title}: per-frame loss and time",
    )
    create_table_artifact(
        plan_rows, key=artifact_key(run, "plan"), description=f"{title}: the plan, values per frame"
    )
    create_markdown_artifact(
        video_markdown(run, Path(video), title),
        key=artifact_key(run, "video"),
        description=f"{title}: the video, on {socket.gethostname()}",
    )


def video_markdown(run: RunRef, video: Path, title: str) -> str:
    """Where the video is (host and path, how to copy it) and an animated preview that plays inline.

    Browsers refuse ``file://`` links from a web page, and the Prefect UI shows images only, so the
    playable copy is an animated GIF of the frames (at most 256 px, within :data:`PREVIEW_BUDGET`).
    """
    host = socket.gethostname()
    path = video.resolve()
    size = path.stat().st_size if path.is_file() else 0
    fps = job_for(run).scene.fps
    lines = [
        f"### Video: {title}",
        "",
        f"**host** `{host}` · **path** `{path}`",
        "",
        f"{_size(size)} · {run.frame_count} frames · {run.frame_count / fps:.1f} s at {fps:g} fps",
        "",
        f"Copy it: `scp {host}:{path} .`",
        "",
    ]
    preview = animated_preview(run)
    if preview is not None:
        lines += ["#### Preview (frames, reduced)", "", f"![animated preview of the video]({preview})", ""]
    return "\n".join(lines)


def _size(n: int) -> str:
    """``734 kB``, ``12.5 MB``."""
    return f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{max(1, round(n / 1e3))} kB"


def animated_preview(run: RunRef, budget: int = PREVIEW_BUDGET) -> str | None:
    """A ``data:image/gif`` URI playing the frames at the scene's speed, or ``None`` if none fits."""
    paths = job_for(run).paths
    fps = job_for(run).scene.fps
    for count in (120, 60, 24):
        step = max(1, -(-run.frame_count // count))
        indices = range(1, run.frame_count + 1, step)
        images = [_fit(paths.frame_png(i), PREVIEW_PX, enlarge=True, palette=True) for i in indices]
        buf = io.BytesIO()
        images[0].save(
            buf,
            format="GIF",
            save_all=True,
            append_images=images[1:],
            duration=round(1000 * step / fps),
            loop=0,
        )
        if len(buf.getvalue()) * 4 // 3 <= budget:
            return "data:image/gif;base64," + base64.b64encode(buf.getvalue()).decode()
    return None
