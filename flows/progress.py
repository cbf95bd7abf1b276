"""What ``pytti render`` prints, and the full log every render keeps in its run directory.

On a terminal, by default: one live progress bar (frame, step, loss, ETA) drawn with ``rich``, the
warnings and errors above it, and the summary at the end. With ``-v`` Prefect's own lines (one per
task, the flow's state changes) are printed as well, and progress becomes one line per frame. Where
stderr is not a terminal (cron, CI, a pipe): one line per frame, the warnings, the summary.

The frame task reports each optimizer step to the ``pytti.progress`` logger; :func:`install` turns
those records into the bar or the lines. :func:`run_log` (used by the render flow, so also on workers)
appends everything logged during a render to ``<run dir>/render.log``.
"""

import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

PROGRESS_LOGGER = "pytti.progress"
LOG_NAME = "render.log"
LOG_FORMAT = "%(asctime)s %(levelname)-7s %(source)s: %(message)s"


class _RunFormatter(logging.Formatter):
    """``LOG_FORMAT`` with ``source`` = the task run's or flow run's name, else the logger's name."""

    def format(self, record: logging.LogRecord) -> str:
        record.source = (
            getattr(record, "task_run_name", None) or getattr(record, "flow_run_name", None) or record.name
        )
        return super().format(record)


def duration(seconds: float) -> str:
    """``3m10s``, ``1h05m``."""
    minutes, secs = divmod(int(seconds + 0.5), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


class _Eta:
    """Steps done in this process and the time they took → time left for the rest of the render."""

    def __init__(self) -> None:
        self.start = time.monotonic()
        self.steps_done = 0

    def step(self, frame: int, step: int, steps: int, frames: int) -> float:
        self.steps_done += 1
        remaining = (frames - frame) * steps + (steps - step)
        return (time.monotonic() - self.start) / self.steps_done * remaining


class ProgressBar(logging.Handler):
    """A ``rich`` bar on a terminal: ``frame 12/48 ━━━━━━╸━━━ step 30/50  loss 0.8123  ETA 3m10s``.

    Records of other loggers at WARNING and above (and all of them when ``verbose``) are printed
    above the bar, so nothing tears it apart.
    """

    def __init__(self, stream: TextIO) -> None:
        super().__init__(level=logging.DEBUG)
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        self.console = Console(file=stream, force_terminal=True)
        self.progress = Progress(
            TextColumn("frame"),
            MofNCompleteColumn(),
            BarColumn(),
            TextColumn("{task.fields[detail]}"),
            console=self.console,
            transient=False,
        )
        self.task: Any = None
        self.eta = _Eta()
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        event = getattr(record, "pytti_step", None)
        frames = getattr(record, "pytti_frames", None)
        if event is None or frames is None:
            self.console.print(self.format(record), markup=False, highlight=False)
            return
        if self.task is None:
            self.progress.start()
            self.task = self.progress.add_task("render", total=frames, detail="")
        eta = self.eta.step(event.frame, event.step, event.steps, frames)
        detail = f"step {event.step}/{event.steps}  loss {event.loss:.4f}  ETA {duration(eta)}"
        done = event.frame - 1 + event.step / event.steps
        self.progress.update(self.task, completed=done, detail=detail)
        if event.frame == frames and event.step == event.steps:
            self.stop()

    def stop(self) -> None:
        """End the live display (leaves the last state of the bar on screen)."""
        if self.task is not None:
            self.progress.stop()


class FrameLines(logging.Handler):
    """One line per finished frame (``frame 12/48  loss 0.8123  1.2 s  ETA 3m10s``), for logs and CI."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__(level=logging.DEBUG)
        self.stream = stream
        self.eta = _Eta()
        self.frame_start = time.monotonic()

    def emit(self, record: logging.LogRecord) -> None:
        event = getattr(record, "pytti_step", None)
        frames = getattr(record, "pytti_frames", None)
        if event is None or frames is None:
            return
        eta = self.eta.step(event.frame, event.step, event.steps, frames)
        if event.step != event.steps:
            return
        now = time.monotonic()
        self.stream.write(
            f"frame {event.frame}/{frames}  loss {event.loss:.4f}  {now - self.frame_start:.1f} s"
            f"  ETA {duration(eta)}\n"
        )
        self.stream.flush()
        self.frame_start = now


class _WarningsOnly(logging.Filter):
    """Lets warnings and errors through: Prefect's per-task INFO lines stay in the log file and the UI."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING


class Terminal:
    """What :func:`install` set up, to undo it with :meth:`close`."""

    def __init__(self, handler: logging.Handler, removed: list[logging.Handler]) -> None:
        self.handler = handler
        self.removed = removed

    def close(self) -> None:
        """Stop the bar, detach the handlers and give Prefect its console back."""
        if isinstance(self.handler, ProgressBar):
            self.handler.stop()
        progress = logging.getLogger(PROGRESS_LOGGER)
        progress.removeHandler(self.handler)
        root = logging.getLogger()
        root.removeHandler(self.handler)
        for handler in self.removed:
            root.addHandler(handler)
        for handler in root.handlers:
            for f in [f for f in handler.filters if isinstance(f, _WarningsOnly)]:
                handler.removeFilter(f)


def install(*, verbose: bool = False, stream: TextIO | None = None) -> Terminal:
    """Set up the terminal for one render (call after ``import prefect``, which sets up its logging).

    Args:
        verbose: keep Prefect's per-task console lines (progress then goes one line per frame).
        stream: where to write (default: stderr); a bar only when it is a terminal.
    """
    stream = stream or sys.stderr
    root = logging.getLogger()
    consoles = [h for h in root.handlers if type(h).__name__ == "PrefectConsoleHandler"]
    progress = logging.getLogger(PROGRESS_LOGGER)
    progress.setLevel(logging.DEBUG)
    progress.propagate = False
    handler: logging.Handler
    removed: list[logging.Handler] = []
    if stream.isatty() and not verbose:
        handler = ProgressBar(stream)
        for console in consoles:  # the bar prints the warnings itself, above the bar
            root.removeHandler(console)
            removed.append(console)
        handler.addFilter(_RootWarnings())
        root.addHandler(handler)
    else:
        handler = FrameLines(stream)
        if not verbose:
            for console in consoles:
                console.addFilter(_WarningsOnly())
    progress.addHandler(handler)
    return Terminal(handler, removed)


class _RootWarnings(logging.Filter):
    """On the bar's handler: progress events always, other records from WARNING up."""

    def filter(self, record: logging.LogRecord) -> bool:
        return hasattr(record, "pytti_step") or record.levelno >= logging.WARNING


@contextmanager
def run_log(run_dir: Path, header: str) -> Iterator[Path]:
    """Append every record logged during the block (INFO and up) to ``<run_dir>/render.log``.

    The per-step progress records are not written; the per-frame lines of the frame task are.
    """
    path = Path(run_dir) / LOG_NAME
    handler = logging.FileHandler(path, mode="a", encoding="utf-8", delay=False)
    handler.setLevel(logging.INFO)
    handler.setFormatter(_RunFormatter(LOG_FORMAT))
    handler.emit(
        logging.makeLogRecord(
            {"name": "pytti.render", "levelno": logging.INFO, "levelname": "INFO", "msg": header}
        )
    )
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield path
    finally:
        root.removeHandler(handler)
        handler.close()
