"""Ctrl-C and SIGTERM: `pytti render` stops within seconds, leaves no server behind, says how to resume."""

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from flows.local_stack import _children
from flows.stopping import Stopped, exit_code, stop_on_signals, stop_signal, stopped_line
from flows.temp_api import LOG_NAME
from tests.flows.test_kill_resume import _pytti  # pytti in its own process group


def test_sigterm_and_ctrl_c_raise_stopped_during_the_block_only() -> None:
    before = signal.getsignal(signal.SIGTERM)
    for sig in (signal.SIGTERM, signal.SIGINT):
        with pytest.raises(Stopped) as caught, stop_on_signals():
            os.kill(os.getpid(), sig)
            time.sleep(5)  # the handler interrupts this at once
        assert caught.value.signum == sig and isinstance(caught.value, KeyboardInterrupt)
    assert signal.getsignal(signal.SIGTERM) is before


def test_the_signal_is_found_behind_the_errors_prefect_wraps_it_in() -> None:
    from prefect.exceptions import TerminationSignal

    assert stop_signal(Stopped(signal.SIGTERM)) == signal.SIGTERM
    assert stop_signal(KeyboardInterrupt()) == signal.SIGINT
    assert stop_signal(TerminationSignal(signal.SIGTERM)) == signal.SIGTERM
    try:
        try:
            raise Stopped(signal.SIGTERM)
        except Stopped as e:
            raise RuntimeError("Execution was aborted by a termination signal") from e
    except RuntimeError as wrapped:
        assert stop_signal(wrapped) == signal.SIGTERM
    assert stop_signal(ValueError("no")) is None
    assert exit_code(signal.SIGINT) == 130 and exit_code(signal.SIGTERM) == 143


def test_the_stopped_line_says_how_to_continue(tmp_path: Path) -> None:
    run = tmp_path / "my run"
    assert "before any frame was rendered" in stopped_line(signal.SIGTERM, run)
    (run / "records").mkdir(parents=True)
    (run / "run.json").write_text("{}")
    for i in (1, 2):
        (run / "records" / f"00000{i}.json").write_text("{}")
    line = stopped_line(signal.SIGINT, run)
    assert (
        line == f"pytti: stopped by SIGINT: 2 frame(s) done in '{run}'; continue with: pytti resume '{run}'"
    )
    assert "run the same command again" in stopped_line(signal.SIGTERM)


def _processes_with_home(home: Path) -> list[int]:
    """Live processes (not zombies) whose environment has ``PREFECT_HOME=home``: the render's server."""
    needle = f"PREFECT_HOME={home}".encode()
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if needle in (proc / "environ").read_bytes().split(b"\0"):
                if (proc / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                    found.append(int(proc.name))
        except (OSError, IndexError):
            continue
    return found


@pytest.mark.slow
@pytest.mark.parametrize(
    ("sig", "to_group"),
    [(signal.SIGTERM, False), (signal.SIGTERM, True), (signal.SIGINT, True)],
    ids=["sigterm-to-pytti", "sigterm-to-group", "ctrl-c-to-group"],
)
def test_a_stopped_render_exits_within_seconds_without_orphans_and_resumes(
    sig: signal.Signals, to_group: bool, write_scene: Callable[..., Path], tmp_path: Path
) -> None:
    scene = write_scene("animation: 2d\nzoom: 1.02\n", frames=8, steps=6)
    run, home = tmp_path / "run", tmp_path / "home"
    proc = _pytti("render", str(scene), "--out", str(run), "--device", "cpu", home=home)
    deadline = time.monotonic() + 300
    while not (run / "records" / "000002.json").exists():
        assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
        assert time.monotonic() < deadline, "the render did not reach frame 2"
        time.sleep(0.02)
    server = [pid for pid in _children(proc.pid) if pid in _processes_with_home(home)]
    assert server, "the temporary API runs as a child of pytti"
    sent = time.monotonic()
    if to_group:
        os.killpg(proc.pid, sig)  # what Ctrl-C on a terminal does
    else:
        os.kill(proc.pid, sig)
    out, _ = proc.communicate(timeout=60)
    took = time.monotonic() - sent
    text = out.decode()
    assert proc.returncode == 128 + sig, text
    assert took < 20, f"took {took:.1f} s to stop"  # ~1-3 s on an idle 2-core box; margin for a busy one
    assert "Traceback" not in text, text
    line = re.search(
        r"pytti: stopped by (SIG\w+): (\d+) frame\(s\) done in .*; continue with: pytti resume (.+)", text
    )
    assert line and line.group(1) == sig.name, text
    assert line.group(3) == str(run) and 2 <= int(line.group(2)) < 8
    time.sleep(0.5)
    assert not _processes_with_home(home), "no process of this render may outlive it (temporary API)"
    assert not list(run.rglob(".*.tmp"))

    resume = _pytti("resume", str(run), home=home)
    out, _ = resume.communicate(timeout=300)
    assert resume.returncode == 0, out.decode()
    assert re.search(r"8 frames \((\d+) rendered, (\d+) kept\)", out.decode())
    assert (run / "scene.mp4").is_file() and not _processes_with_home(home)


@pytest.mark.slow
def test_render_says_something_at_once_and_stops_its_api_when_stopped_early(
    write_scene: Callable[..., Path], tmp_path: Path
) -> None:
    home = tmp_path / "home"
    env = {**os.environ, "PREFECT_HOME": str(home)}
    env.pop("PREFECT_API_URL", None)
    start = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "flows.cli", "render", str(write_scene()), "--out", str(tmp_path / "run")],
        env=env,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    assert proc.stderr is not None
    first = proc.stderr.readline().decode()
    took = time.monotonic() - start
    assert first.startswith("pytti: starting Prefect's temporary API"), first
    assert took < 10, f"first line after {took:.1f} s"  # ~0.3 s on an idle machine, long before torch loads
    assert (home / LOG_NAME).exists()
    proc.send_signal(signal.SIGTERM)
    rest = proc.communicate(timeout=60)[1].decode()
    assert proc.returncode == 143 and "pytti: stopped by SIGTERM" in rest, rest
    assert not _processes_with_home(home)
