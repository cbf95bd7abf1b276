"""A render survives the reader of its output going away (issue 16.10): a restarted worker, a closed
ssh session, ``pytti render … | head``."""

import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from flows.local_stack import REPO

# What a flow-run process does with its log: rich Console writes (Prefect's console handler), plain
# prints and logging, and a child process writing to the inherited stderr, before and after the reader
# of its pipes went away. It touches `done` when it got through.
WRITER = textwrap.dedent(
    """
    import logging, subprocess, sys, time
    from pathlib import Path
    from rich.console import Console
    if sys.argv[1] == "guarded":
        from flows.pipes import keep_output_alive
        assert keep_output_alive() == [1, 2] and keep_output_alive() == []
    console = Console(file=sys.stderr)
    logging.basicConfig(stream=sys.stderr)
    Path(sys.argv[2]).touch()  # ready: the test closes the pipes now
    while Path(sys.argv[2]).exists():
        time.sleep(0.01)
    for i in range(200):
        console.print(f"frame {i} " + "x" * 200)
        print(f"line {i} " + "y" * 200, flush=True)
        logging.warning("warning %d", i)
    subprocess.run([sys.executable, "-c", "import sys; sys.stderr.write('child ' * 10000)"], check=True)
    Path(sys.argv[3]).touch()
    """
)


@pytest.mark.parametrize("mode", ["guarded", "unguarded"])
def test_writes_after_the_reader_went_away_never_kill_the_process(mode: str, tmp_path: Path) -> None:
    ready, done = tmp_path / "ready", tmp_path / "done"
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, mode, str(ready), str(done)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    while not ready.exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.returncode
        time.sleep(0.01)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # the worker is gone
    proc.stderr.close()
    ready.unlink()
    code = proc.wait(timeout=60)
    if mode == "guarded":
        assert code == 0 and done.exists()
    else:  # what a flow run did before: rich turns the broken pipe into SystemExit(1)
        assert code != 0 and not done.exists()


@pytest.mark.slow
def test_pytti_render_finishes_after_its_output_pipes_close(
    write_scene: Callable[..., Path], tmp_path: Path
) -> None:
    scene, out = write_scene(frames=6, size=16, steps=3), tmp_path / "run"
    env = {
        **os.environ,
        "PREFECT_HOME": str(tmp_path / "home"),
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
    }
    env.pop("PREFECT_API_URL", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "flows.cli", "render", str(scene), "--out", str(out), "--device", "cpu"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 300
    while not (out / "records" / "000002.json").exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.returncode
        time.sleep(0.05)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # `pytti render … | head`, or the ssh session closed
    proc.stderr.close()
    assert proc.wait(timeout=300) == 0
    assert len(list((out / "records").glob("*.json"))) == 6 and (out / "scene.mp4").is_file()
