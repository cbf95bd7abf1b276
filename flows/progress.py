"""A terminal progress line for ``pytti render``: frame, step, loss and ETA.

The frame task reports each optimizer step to the ``pytti.progress`` logger; this handler, installed
by the CLI only, turns those records into one self-updating line on a terminal.
"""

import logging
import sys
import time
from typing import TextIO


class ProgressLine(logging.Handler):
    """Draws ``frame 12/48  step 30/50  loss 0.8123  ETA 3m10s`` on a terminal."""

    def __init__(self, stream: TextIO | None = None) -> None:
        super().__init__(level=logging.DEBUG)
        self.stream = stream or sys.stderr
        self.start = time.monotonic()
        self.steps_done = 0

    def emit(self, record: logging.LogRecord) -> None:
        event = getattr(record, "pytti_step", None)
        total_frames = getattr(record, "pytti_frames", None)
        if event is None or total_frames is None:
            return
        self.steps_done += 1
        elapsed = time.monotonic() - self.start
        remaining_steps = (total_frames - event.frame) * event.steps + (event.steps - event.step)
        eta = elapsed / self.steps_done * remaining_steps
        line = (
            f"\rframe {event.frame}/{total_frames}  step {event.step}/{event.steps}  "
            f"loss {event.loss:.4f}  ETA {_duration(eta)}   "
        )
        self.stream.write(line)
        if event.frame == total_frames and event.step == event.steps:
            self.stream.write("\n")
        self.stream.flush()


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds + 0.5), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def install(stream: TextIO | None = None) -> ProgressLine | None:
    """Attach a :class:`ProgressLine` to ``pytti.progress`` when the stream is a terminal."""
    stream = stream or sys.stderr
    if not stream.isatty():
        return None
    handler = ProgressLine(stream)
    logger = logging.getLogger("pytti.progress")
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    logger.addHandler(handler)
    return handler
