"""``pytti resume``, ``pytti fork`` and ``pytti info``: working with run directories and their videos."""

import argparse
import json
import sys
from pathlib import Path

from pytti_engine.errors import PyttiError


def _fail(message: str) -> int:
    print(f"pytti: error: {message}", file=sys.stderr)
    return 2


def cmd_resume(args: argparse.Namespace) -> int:
    """Finish a run where it stopped: same scene, overrides and device as recorded in ``run.json``."""
    from flows.cli import _run_render
    from pytti_engine.confine import check_output

    run_json = Path(args.run_dir) / "run.json"
    try:
        check_output(Path(args.run_dir))
        run = json.loads(run_json.read_text())
    except PyttiError as e:
        return _fail(str(e))
    except (OSError, ValueError) as e:
        return _fail(f"{run_json}: not a run directory ({e})")
    device = args.device or run["device"]
    return _run_render(Path(run["scene_path"]), Path(args.run_dir), device, run.get("overrides", []))


def cmd_fork(args: argparse.Namespace) -> int:
    """Start a new run from frame K of an existing one, continuing with another scene."""
    from flows.cli import _check_render_inputs, _run_render
    from pytti_engine.confine import check_output
    from pytti_engine.rundir import RunLock, RunPaths, fork_run

    device = args.device or "auto"
    try:
        check_output(Path(args.run_dir), "fork source")
        out = _check_render_inputs(Path(args.scene), Path(args.out), device, args.set)  # before any write
        with RunLock(out):  # nothing is written into a directory another render holds
            fork_run(RunPaths(Path(args.run_dir)), args.at, RunPaths(out))
    except PyttiError as e:
        return _fail(str(e))
    print(f"forked {args.run_dir} at frame {args.at} into {args.out}")
    return _run_render(Path(args.scene), Path(args.out), device, args.set)


def cmd_info(args: argparse.Namespace) -> int:
    """Print the manifest a render embedded in its video."""
    from pytti_engine.manifest import METADATA_KEY
    from pytti_engine.video import probe_video

    try:
        info = probe_video(Path(args.video))
    except (PyttiError, OSError) as e:
        return _fail(str(e))
    raw = info.metadata.get(METADATA_KEY)
    if raw is None:
        return _fail(f"{args.video}: no pytti manifest in its metadata")
    manifest = json.loads(raw)
    print(
        f"{args.video}: {info.frames} frames, {info.width}x{info.height}, {info.fps:g} fps, {info.duration:.2f} s"
    )
    print(json.dumps(manifest, indent=2, sort_keys=True))
    return 0


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add ``resume``, ``fork`` and ``info`` to the ``pytti`` parser."""
    resume = sub.add_parser("resume", help="finish a run directory where it stopped")
    resume.add_argument("run_dir")
    resume.add_argument("--device", help="override the recorded device")
    resume.set_defaults(func=cmd_resume)

    fork = sub.add_parser("fork", help="start a new run from frame K of an existing run")
    fork.add_argument("run_dir")
    fork.add_argument("--at", type=int, required=True, metavar="K", help="last frame to take over")
    fork.add_argument("scene", help="the scene to continue with")
    fork.add_argument("--out", required=True, help="the new run directory")
    fork.add_argument("--device")
    fork.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    fork.set_defaults(func=cmd_fork)

    info = sub.add_parser("info", help="print the provenance manifest embedded in a rendered video")
    info.add_argument("video")
    info.set_defaults(func=cmd_info)
