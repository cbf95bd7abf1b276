"""What ``pytti render`` prints: one live bar on a terminal, one line per frame elsewhere, Prefect's
per-task lines only with -v, and the full log in the run directory."""

import io
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from prefect.logging.handlers import PrefectConsoleHandler

from flows import progress
from flows.cli import build_parser
from pytti_engine.render import StepEvent


@pytest.fixture(autouse=True)
def prefect_console() -> Iterator[logging.Handler]:
    """Prefect's console handler on the root logger, as a CLI process has it."""
    handler = PrefectConsoleHandler(stream=io.StringIO())
    root = logging.getLogger()
    saved = [h for h in root.handlers if isinstance(h, PrefectConsoleHandler)]
    for h in saved:
        root.removeHandler(h)
    root.addHandler(handler)
    yield handler
    root.removeHandler(handler)
    for h in saved:
        root.addHandler(h)


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def _steps(frames: int, steps: int) -> None:
    log = logging.getLogger(progress.PROGRESS_LOGGER)
    for frame in range(1, frames + 1):
        for step in range(1, steps + 1):
            event = StepEvent(frame=frame, step=step, steps=steps, loss=1.0 / (frame + step))
            log.debug("step", extra={"pytti_step": event, "pytti_frames": frames})


def _consoles() -> list[logging.Handler]:
    return [h for h in logging.getLogger().handlers if type(h).__name__ == "PrefectConsoleHandler"]


def _record(level: int, message: str) -> logging.LogRecord:
    return logging.makeLogRecord({"name": "prefect.task_runs", "levelno": level, "msg": message})


def test_without_a_terminal_one_line_per_frame_and_prefect_info_lines_hidden() -> None:
    stream = io.StringIO()
    terminal = progress.install(stream=stream)
    try:
        _steps(frames=3, steps=4)
        (console,) = _consoles()
        assert not console.filter(_record(logging.INFO, "Finished in state Completed()"))
        assert console.filter(_record(logging.WARNING, "slow frame"))
    finally:
        terminal.close()
    lines = stream.getvalue().splitlines()
    assert [line.split("  ")[0] for line in lines] == ["frame 1/3", "frame 2/3", "frame 3/3"]
    assert all("loss" in line and "ETA" in line for line in lines)
    assert console.filter(_record(logging.INFO, "after the render")), "close() restores Prefect's console"


def test_verbose_keeps_prefect_lines() -> None:
    terminal = progress.install(verbose=True, stream=io.StringIO())
    try:
        (console,) = _consoles()
        assert console.filter(_record(logging.INFO, "Finished in state Completed()"))
    finally:
        terminal.close()


def test_on_a_terminal_one_live_bar_with_warnings_above_it() -> None:
    stream = _Tty()
    terminal = progress.install(stream=stream)
    try:
        assert _consoles() == [], "the bar prints warnings itself; Prefect's console is off meanwhile"
        logging.getLogger("prefect.task_runs").warning("frame 2 is slow")
        logging.getLogger("prefect.task_runs").info("Finished in state Completed()")
        _steps(frames=2, steps=3)
    finally:
        terminal.close()
    out = stream.getvalue()
    assert "frame 2 is slow" in out and "Finished in state" not in out
    assert "2/2" in out and "step 3/3" in out and "loss 0.2000" in out and "ETA" in out
    assert out.count("\n") <= 4, "the bar is redrawn in place, not one line per step"
    assert len(_consoles()) == 1


def test_run_log_appends_every_record_with_its_task_name(tmp_path: Path) -> None:
    log = logging.getLogger("pytti.test.frames")
    log.setLevel(logging.INFO)  # as Prefect sets its loggers (PREFECT_LOGGING_LEVEL)
    with progress.run_log(tmp_path, "render scene.yaml (run 1)"):
        log.info("frame 1/2 rendered", extra={"task_run_name": "frame-000001"})
        log.debug("a step: not in the file")
    log.warning("after the block: not in the file")
    with progress.run_log(tmp_path, "render scene.yaml (run 2)"):
        pass
    text = (tmp_path / progress.LOG_NAME).read_text()
    assert "pytti.render: render scene.yaml (run 1)" in text and "(run 2)" in text
    assert "INFO    frame-000001: frame 1/2 rendered" in text
    assert "after the block" not in text and "a step" not in text


def test_render_and_demo_take_verbose() -> None:
    assert build_parser().parse_args(["render", "s.yaml", "-v"]).verbose
    assert not build_parser().parse_args(["demo"]).verbose
