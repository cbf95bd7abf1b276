"""Time to the first frame: ``pytti render`` from the command to its first printed line and to the
engine's first optimizer step, with a new ``PREFECT_HOME`` (Prefect's temporary API creates its
database, as on a first run) or a used one (``--warm-home``).

The command runs exactly as the ``pytti`` console script does (``flows.cli.main``), in a fresh Python;
the only addition is a logging handler on the ``pytti.progress`` logger (added where ``pytti render``
sets that logger up), which the frame task writes one record to per optimizer step: the first record's arrival is "first optimizer step". "First
printed line" is the first byte on the command's stdout or stderr. The scene is a 12-frame 64² render
on the stand-in perceptor (written before timing), so model loading is short; a real ViT-B-32 adds its
load time to the second figure.

    .venv/bin/python bench/first_frame.py [--repeats 3] [--warm-home] [--baseline DIR]

Prints every run's two times, then ``first line: X s, first step: Y s`` (medians of the runs that
rendered; a failed run, e.g. Prefect's API timing out, is printed and counted). With ``--baseline
DIR`` (another checkout, e.g. ``git archive <commit> | tar -x -C DIR``) runs alternate between DIR and
this checkout, and the last line is ``ratio: first step this ÷ baseline`` (medians).
"""

import argparse
import os
import selectors
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import write_bench_scene

REPO = Path(__file__).resolve().parent.parent

# Run in the child: report the first optimizer step on the marker pipe, then behave exactly like `pytti`.
HOOK = """
import logging, os, sys, time
class _First(logging.Handler):
    done = False
    def emit(self, record):
        if not _First.done and hasattr(record, "pytti_step"):
            _First.done = True
            os.write(int(os.environ["PYTTI_BENCH_MARKER_FD"]), b"step %.6f\\n" % time.time())
from flows import progress
_install = progress.install
def install(**kwargs):  # after Prefect's logging set-up, which disables loggers made before it
    terminal = _install(**kwargs)
    logging.getLogger(progress.PROGRESS_LOGGER).addHandler(_First())
    return terminal
progress.install = install
from flows.cli import main
sys.exit(main(sys.argv[1:]))
"""


def time_render(scene: Path, out: Path, home: Path, repo: Path = REPO) -> tuple[float, float, float]:
    """Run ``pytti render`` of checkout ``repo`` once; returns seconds to the first printed line, the
    first optimizer step, and the exit."""
    marker_r, marker_w = os.pipe()
    env = {**os.environ, "PREFECT_HOME": str(home), "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(repo)}
    env["PYTTI_BENCH_MARKER_FD"] = str(marker_w)
    env.pop("PREFECT_API_URL", None)
    argv = [sys.executable, "-c", HOOK, "render", str(scene), "--out", str(out), "--device", "cpu"]
    start = time.time()
    proc = subprocess.Popen(
        argv,
        env=env,
        cwd=repo,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        pass_fds=(marker_w,),
    )
    os.close(marker_w)
    first_line = first_step = float("nan")
    sel = selectors.DefaultSelector()
    assert proc.stdout is not None and proc.stderr is not None
    for stream in (proc.stdout, proc.stderr):
        sel.register(stream, selectors.EVENT_READ)
    sel.register(marker_r, selectors.EVENT_READ)
    output = b""
    open_streams = 3
    while open_streams:
        for key, _ in sel.select(timeout=600):
            fd = key.fd if isinstance(key.fileobj, int) else key.fileobj.fileno()
            data = os.read(fd, 65536)
            if not data:
                sel.unregister(key.fileobj)
                open_streams -= 1
            elif key.fileobj == marker_r:
                first_step = float(data.split()[1]) - start
            else:
                output += data
                if first_line != first_line:  # nan: nothing printed yet
                    first_line = time.time() - start
    proc.wait()
    os.close(marker_r)
    if proc.returncode != 0:  # counted as a failure, e.g. Prefect's API timing out
        last = output.decode(errors="replace").strip().splitlines()[-1:] or [""]
        print(f"  pytti render failed ({proc.returncode}): {last[0][:300]}")
        return first_line, float("nan"), time.time() - start
    return first_line, first_step, time.time() - start


def _median(values: list[float]) -> float:
    """Median of the runs that got there (NaN when none did)."""
    done = [v for v in values if v == v]
    return statistics.median(done) if done else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--warm-home", action="store_true", help="reuse one PREFECT_HOME (its database exists)"
    )
    parser.add_argument("--baseline", type=Path, help="another checkout to compare with, run alternately")
    args = parser.parse_args()

    sides = {"this": REPO} if args.baseline is None else {"baseline": args.baseline.resolve(), "this": REPO}
    with tempfile.TemporaryDirectory(prefix="pytti-bench-") as tmp:
        root = Path(tmp)
        scene = write_bench_scene(root, steps=4, frames=12, size=64)
        lines: dict[str, list[float]] = {side: [] for side in sides}
        steps: dict[str, list[float]] = {side: [] for side in sides}
        for i in range(args.repeats):
            for side, repo in sides.items():
                home = root / (f"home-{side}" if args.warm_home else f"home-{side}-{i}")
                line, step, total = time_render(scene, root / f"out-{side}-{i}", home, repo)
                print(
                    f"run {i + 1} {side}: first line {line:.2f} s, first optimizer step {step:.2f} s, "
                    f"exit {total:.2f} s (load average {os.getloadavg()[0]:.1f})",
                    flush=True,
                )
                lines[side].append(line)
                steps[side].append(step)
        for side in sides:
            print(
                f"{side}: first line: {_median(lines[side]):.2f} s, first step: {_median(steps[side]):.2f} s"
            )
        if args.baseline is not None:
            failed = {side: sum(v != v for v in steps[side]) for side in sides}
            print(f"failed runs: baseline {failed['baseline']}, this {failed['this']} of {args.repeats}")
            ratio = _median(steps["this"]) / _median(steps["baseline"])
            print(f"ratio: first step this / baseline = {ratio:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
