"""Scene commands of the ``pytti`` CLI: ``validate``, ``plan``, ``import-pytti`` and ``schema``.

``flows/cli.py`` calls :func:`register` with its sub-parsers. Each command's ``func`` takes the parsed
``argparse.Namespace`` and returns the exit code: 0 done, 2 bad input (the message goes to stderr,
without a traceback). Nothing here imports prefect; ``validate`` imports open_clip (and torch) for its registry of models
and tags; ``--plot`` imports matplotlib only when it is asked for.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pytti_engine.errors import SceneError, SceneErrors
from pytti_engine.scene import Plan, Scene, build_plan, load_scene
from pytti_engine.scene.json_schema import scene_json_schema_text
from pytti_engine.scene.pytti_import import import_pytti_config
from pytti_engine.scene.report import plan_csv, plan_table, summary

EXIT_OK = 0
EXIT_BAD_INPUT = 2


def _fail(message: str) -> int:
    print(message, file=sys.stderr)
    return EXIT_BAD_INPUT


def _report(error: SceneError) -> int:
    count = len(error.errors) if isinstance(error, SceneErrors) else 1
    print(str(error), file=sys.stderr)
    if count > 1:
        print(f"{count} errors", file=sys.stderr)
    return EXIT_BAD_INPUT


def _load_and_plan(args: argparse.Namespace) -> tuple[Scene, Plan]:
    scene = load_scene(args.scene, args.set)
    return scene, build_plan(scene, name=str(args.scene))


def cmd_validate(args: argparse.Namespace) -> int:
    """``pytti validate SCENE``: load, compile and evaluate every frame, then run the checks a render
    makes before it starts (:func:`~pytti_engine.preflight.preflight`: models, inputs, values); print
    ``ok: ...`` and what the render will use, or every error."""
    try:
        scene, plan = _load_and_plan(args)
    except SceneError as e:
        return _report(e)
    from pytti_engine.preflight import PreflightError, preflight

    try:
        report = preflight(scene, plan, name=str(args.scene))
    except PreflightError as e:
        for problem in e.problems:
            print(problem, file=sys.stderr)
        if len(e.problems) > 1:
            print(f"{len(e.problems)} errors", file=sys.stderr)
        return EXIT_BAD_INPUT
    for note in report.notes:
        print(f"note: {note}", file=sys.stderr)
    for warning in report.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    vqgan = report.vqgan
    print(summary(scene, plan, extra=[] if vqgan is None else [f"vqgan {vqgan.name} ({vqgan.checkpoint})"]))
    for line in report.lines():
        print(f"  {line}")
    return EXIT_OK


def cmd_plan(args: argparse.Namespace) -> int:
    """``pytti plan SCENE [--csv FILE] [--plot FILE.png]``: every value of every frame."""
    try:
        _, plan = _load_and_plan(args)
    except SceneError as e:
        return _report(e)
    if args.plot:
        code = _plot(plan, Path(args.plot))
        if code != EXIT_OK:
            return code
    if args.csv:
        try:
            Path(args.csv).write_text(plan_csv(plan), encoding="utf-8")
        except OSError as e:
            return _fail(f"{args.csv}: cannot write CSV: {e.strerror or e}")
    print(plan_table(plan, max_rows=args.rows))
    return EXIT_OK


def _plot(plan: Plan, out: Path) -> int:
    from tasks.plan_chart import plan_chart_png

    try:
        png = plan_chart_png(plan, dpi=100)
    except ImportError:
        return _fail("--plot needs matplotlib, which is not installed: pip install 'pytti-flow[charts]'")
    if png is None:
        print(f"{out}: not written, nothing in the plan changes over time", file=sys.stderr)
        return EXIT_OK
    try:
        out.write_bytes(png)
    except OSError as e:
        return _fail(f"{out}: cannot write plot: {e.strerror or e}")
    return EXIT_OK


def cmd_import_pytti(args: argparse.Namespace) -> int:
    """``pytti import-pytti PYTTI.yaml -o SCENE.yaml``: convert a pytti-core config, then validate it."""
    out = Path(args.output)
    if out.exists() and not args.force:
        return _fail(f"{out}: already exists (use --force to overwrite)")
    try:
        depth_model = args.depth_model
        if depth_model is not None and Path(depth_model).is_dir():
            depth_model = str(Path(depth_model).resolve())  # the scene file may be written elsewhere
        text, warnings = import_pytti_config(args.config, depth_model=depth_model)
    except SceneError as e:
        return _report(e)
    try:
        out.write_text(text, encoding="utf-8")
    except OSError as e:
        return _fail(f"{out}: cannot write: {e.strerror or e}")
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    try:
        scene = load_scene(out)
        plan = build_plan(scene, name=str(out))
    except SceneError as e:
        _report(e)
        return _fail(f"wrote {out}, but it does not validate yet: edit it, then run 'pytti validate {out}'")
    print(f"wrote {out} ({summary(scene, plan).removeprefix('ok: ')})")
    return EXIT_OK


def cmd_schema(args: argparse.Namespace) -> int:
    """``pytti schema``: print the scene file's JSON Schema."""
    sys.stdout.write(scene_json_schema_text())
    return EXIT_OK


def _add_set(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override a scene key (repeatable)"
    )


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``validate``, ``plan``, ``import-pytti`` and ``schema`` to the ``pytti`` parser."""
    validate = subparsers.add_parser("validate", help="check a scene file and evaluate every frame")
    validate.add_argument("scene", help="the scene YAML file")
    _add_set(validate)
    validate.set_defaults(func=cmd_validate)

    plan = subparsers.add_parser("plan", help="print every value of every frame")
    plan.add_argument("scene", help="the scene YAML file")
    plan.add_argument("--csv", metavar="FILE", help="also write the full plan as CSV")
    plan.add_argument("--plot", metavar="FILE.png", help="also plot the curves (needs matplotlib)")
    plan.add_argument("--rows", type=int, default=60, help="show at most about this many frames (default 60)")
    _add_set(plan)
    plan.set_defaults(func=cmd_plan)

    convert = subparsers.add_parser("import-pytti", help="convert a pytti-core config into a scene file")
    convert.add_argument("config", help="the pytti-core YAML config")
    convert.add_argument(
        "-o", "--output", required=True, metavar="SCENE.yaml", help="the scene file to write"
    )
    convert.add_argument("--force", action="store_true", help="overwrite the output file")
    convert.add_argument(
        "--depth-model",
        metavar="DIR",
        help="3D: a depth model folder (Depth-Anything-V2) or cached hub id to use instead of flat depth",
    )
    convert.set_defaults(func=cmd_import_pytti)

    schema = subparsers.add_parser("schema", help="print the scene file's JSON Schema")
    schema.set_defaults(func=cmd_schema)
