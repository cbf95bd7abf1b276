"""Ctrl-C and SIGTERM for the ``pytti`` commands: stop cleanly, say how to continue.

While a command runs, SIGINT and SIGTERM raise :class:`Stopped` in the main thread (SIGTERM would
otherwise end the process at once, skipping every clean-up, and leave Prefect's temporary API running).
Inside a flow Prefect swaps in its own SIGTERM handler (``TerminationSignal``), records the run as
Crashed and sends the signal again, which lands here. The frame being rendered is abandoned: its files
are written atomically (a temporary file renamed into place), so nothing half-written looks done, and
the next render into the run directory removes the temporary files and renders that frame again.
"""

import contextlib
import shlex
import signal
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Stopped(KeyboardInterrupt):
    """A stop signal arrived (a ``KeyboardInterrupt``, so code that treats Ctrl-C specially still does)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise_stopped(signum: int, frame: FrameType | None) -> None:
    raise Stopped(signum)


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """Turn SIGINT and SIGTERM into :class:`Stopped` during the block (main thread only; elsewhere a no-op)."""
    previous = {}
    try:
        for sig in STOP_SIGNALS:
            previous[sig] = signal.signal(sig, _raise_stopped)
    except ValueError:  # not the main thread
        pass
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def stop_signal(error: BaseException) -> int | None:
    """The signal behind ``error`` (ours, Ctrl-C, Prefect's ``TerminationSignal``), also when it is the
    cause or context of another error (Prefect reports a frame stopped mid-way as a crash), else ``None``."""
    seen: BaseException | None = error
    for _ in range(8):
        if seen is None:
            return None
        if isinstance(seen, Stopped):
            return seen.signum
        if isinstance(seen, KeyboardInterrupt):
            return int(signal.SIGINT)
        if type(seen).__name__ == "TerminationSignal" and isinstance(getattr(seen, "signal", None), int):
            return int(seen.signal)  # type: ignore[attr-defined]
        seen = seen.__cause__ or seen.__context__
    return None


def exit_code(signum: int) -> int:
    """The shell's convention: 128 + the signal number (130 for Ctrl-C, 143 for SIGTERM)."""
    return 128 + signum


def stopped_line(signum: int, run_dir: Path | None = None) -> str:
    """One line: what stopped the command and how to continue.

    Args:
        signum: the signal.
        run_dir: the render's run directory, when one was being rendered.
    """
    name = signal.Signals(signum).name
    if run_dir is None:
        return f"pytti: stopped by {name}; run the same command again to continue (finished frames are kept)"
    if not (run_dir / "run.json").is_file():
        return f"pytti: stopped by {name} before any frame was rendered; run the same command again to start"
    done = len(list((run_dir / "records").glob("*.json")))
    where = shlex.quote(str(run_dir))
    return f"pytti: stopped by {name}: {done} frame(s) done in {where}; continue with: pytti resume {where}"
