"""kill -9 in the middle of a render, then `pytti resume`: every PNG byte-identical to an uninterrupted render."""

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from flows.render_scene import RenderParams, render_scene

pytestmark = pytest.mark.slow


def _pytti(*args: str, home: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PREFECT_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    env.pop("PREFECT_API_URL", None)
    return subprocess.Popen(
        [sys.executable, "-m", "flows.cli", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # so the kill takes Prefect's ephemeral server down too, like a crash
    )


def kill_after_frame(proc: subprocess.Popen[bytes], run: Path, frame: int, *, after_s: float = 0.0) -> int:
    """Wait (4 min at most) until ``frame`` of ``run`` is done, then ``after_s`` more, then kill -9 the
    render's process group; returns how many frames were done by then."""
    deadline = time.monotonic() + 240
    while not (run / "records" / f"{frame:06d}.json").exists():
        assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
        assert time.monotonic() < deadline, f"render did not reach frame {frame}"
        time.sleep(0.01)
    time.sleep(after_s)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    return len(list((run / "records").glob("*.json")))


def test_kill_minus_9_then_resume_is_byte_identical(write_scene: Callable[..., Path], tmp_path: Path) -> None:
    scene = write_scene(
        'animation: 2d\ntranslate_x: 1.5\nrotate_2d: "2 * t"\nzoom: 1.03\n', frames=10, steps=6
    )
    reference = tmp_path / "reference"
    render_scene(RenderParams(scene_path=str(scene), out_dir=str(reference), device="cpu"))

    run = tmp_path / "run"
    proc = _pytti("render", str(scene), "--out", str(run), "--device", "cpu", home=tmp_path / "home")
    done_at_kill = kill_after_frame(proc, run, 4, after_s=0.15)  # somewhere inside a later frame
    assert 4 <= done_at_kill < 10, f"the kill should land mid-render, {done_at_kill} frames were done"
    assert not (run / "scene.mp4").exists()

    resume = _pytti("resume", str(run), home=tmp_path / "home")
    out, _ = resume.communicate(timeout=300)
    assert resume.returncode == 0, out.decode()
    assert f"({10 - done_at_kill} rendered, {done_at_kill} kept)" in out.decode()
    ref = {p.name: p.read_bytes() for p in (reference / "frames").glob("*.png")}
    got = {p.name: p.read_bytes() for p in (run / "frames").glob("*.png")}
    assert got == ref
    assert not list(run.rglob("*.tmp")), "no temp files may survive"
