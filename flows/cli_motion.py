"""Motion commands of the ``pytti`` CLI: ``pytti preview SCENE --out DIR``.

``flows/cli.py`` calls :func:`register` with its sub-parsers. The preview loads no perceptor: it runs
the renderer with zero optimizer steps, so each frame is the previous one moved by the scene's camera
(see :mod:`pytti_engine.preview`). Exit codes: 0 done, 2 bad input, 1 runtime failure.
"""

import argparse
import dataclasses
import sys
from pathlib import Path

from pytti_engine.errors import PyttiError

EXIT_OK, EXIT_FAILURE, EXIT_BAD_INPUT = 0, 1, 2


def cmd_preview(args: argparse.Namespace) -> int:
    """``pytti preview SCENE --out DIR [--frames N] [--no-video] [--device D] [--set K=V]``."""
    from pytti_engine.devices import resolve_device
    from pytti_engine.preview import write_preview
    from pytti_engine.scene import build_plan, load_scene

    try:
        scene = load_scene(Path(args.scene), args.set)
        plan = build_plan(scene, name=str(args.scene))
        if args.frames is not None:
            plan = dataclasses.replace(plan, frames=plan.frames[: args.frames])
        device = resolve_device(args.device)
        out = Path(args.out)

        def progress(done: int, total: int) -> None:
            if sys.stderr.isatty():  # a self-updating line on a terminal, nothing in logs
                end = "\n" if done == total else ""
                print(f"\rframe {done}/{total}", end=end, file=sys.stderr, flush=True)

        result = write_preview(scene, plan, out, device=device, video=not args.no_video, on_progress=progress)
    except PyttiError as e:
        print(f"pytti: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except Exception as e:  # noqa: BLE001 - the CLI's last line of defence: report, exit 1
        print(f"pytti: preview failed: {type(e).__name__}: {e}", file=sys.stderr)
        return EXIT_FAILURE
    where = result.video if result.video is not None else out / "frames"
    print(f"done: {where} — {len(result.frames)} frames in {result.seconds:.1f} s")
    return EXIT_OK


def register(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add ``preview`` to the ``pytti`` parser."""
    preview = subparsers.add_parser(
        "preview", help="the camera motion alone, as frames + MP4, in seconds (no perceptor loaded)"
    )
    preview.add_argument("scene", help="the scene YAML file")
    preview.add_argument(
        "--out", required=True, metavar="DIR", help="output folder (frames/ and preview.mp4)"
    )
    preview.add_argument("--frames", type=int, default=None, metavar="N", help="only the first N frames")
    preview.add_argument("--no-video", action="store_true", help="write the PNG frames only")
    preview.add_argument("--device", default="cpu", help="cpu (default) | auto | cuda | cuda:N")
    preview.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override a scene key (repeatable)"
    )
    preview.set_defaults(func=cmd_preview)
