"""Batch and deployment commands of the ``pytti`` CLI: ``batch``, ``serve`` and ``crash-detection``;
plus :func:`cmd_sweep`, which ``pytti render SCENE --sweep KEY=V1,V2`` hands its work to.

``flows/cli.py`` calls :func:`register` with its sub-parsers. Exit codes: 0 done, 2 bad input
(invalid scenes: nothing was started), 1 some scene failed (the others ran to the end).
"""

import argparse
import os
import sys
from pathlib import Path

from pytti_engine.errors import PyttiError

EXIT_OK, EXIT_FAILURE, EXIT_BAD_INPUT = 0, 1, 2
_PREFECT_DEFAULTS = {"DO_NOT_TRACK": "1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}


def _error(message: str) -> int:
    print(f"pytti: error: {message}", file=sys.stderr)
    return EXIT_BAD_INPUT


def api_refusal(error: BaseException) -> str | None:
    """The one-line message for a Prefect server that refused us (HTTP 401/403), else ``None``.

    A server started with ``PREFECT_SERVER_API_AUTH_STRING`` answers 401 to clients without the
    matching ``PREFECT_API_AUTH_STRING``.
    """
    import httpx

    response = getattr(error, "response", None)
    if not isinstance(error, httpx.HTTPStatusError) or response is None:
        return None
    if response.status_code not in (401, 403):
        return None
    url = os.environ.get("PREFECT_API_URL", str(response.request.url))
    given = "a wrong" if os.environ.get("PREFECT_API_AUTH_STRING") else "no"
    return (
        f"the Prefect server at {url} refused the request ({response.status_code} {response.reason_phrase}): "
        f"{given} PREFECT_API_AUTH_STRING; set it to the server's user:password "
        "(its PREFECT_SERVER_API_AUTH_STRING)"
    )


def _run_batch(
    scenes: list[str],
    *,
    out_root: str | None,
    device: str,
    overrides: list[str],
    sweep: list[str],
    skip_invalid: bool,
    deployment: str | None,
) -> int:
    """Validate every job here (no Prefect start-up for bad input), then run the batch flow."""
    from pytti_engine.confine import check_output, renders_root
    from tasks.batch import parse_sweep, plan_jobs, validate_jobs

    root = Path(out_root).absolute() if out_root else renders_root()  # --out is relative to this folder
    try:
        check_output(root, "out root")
        sweep_values = parse_sweep(sweep)
        checks = validate_jobs.fn(plan_jobs(scenes, root, overrides, sweep_values))
    except PyttiError as e:
        return _error(str(e))
    if not checks:  # empty folders (a nightly queue with nothing queued): done, nothing to do
        print(f"nothing to render: no scene files (*.yaml, *.yml) in {', '.join(scenes)}")
        return EXIT_OK
    invalid = [c for c in checks if c.error]
    for check in invalid:
        print(f"{check.job.name}: invalid\n{check.error}", file=sys.stderr)
    if invalid and not skip_invalid:
        return _error(f"{len(invalid)} of {len(checks)} scene(s) are invalid; nothing was started")

    for key, value in _PREFECT_DEFAULTS.items():
        os.environ.setdefault(key, value)
    from flows.batch import BatchFailed, BatchParams, batch_render
    from flows.temp_api import ensure_ready

    params = BatchParams(
        scenes=scenes,
        out_root=str(root),
        device=device,
        overrides=overrides,
        sweep=sweep_values,
        skip_invalid=skip_invalid,
        deployment=deployment,
    )
    try:
        ensure_ready()  # the temporary API `pytti` started first answers (a TemporaryApiError: one line)
        summary = batch_render(params)
    except BatchFailed as e:
        print(e.summary.table())
        print(
            f"pytti: {e.summary.count('completed')} of {len(e.summary.rows)} scene(s) completed",
            file=sys.stderr,
        )
        return EXIT_FAILURE
    except PyttiError as e:
        return _error(str(e))
    except Exception as e:
        if (refusal := api_refusal(e)) is None:
            raise
        return _error(refusal)
    print(summary.table())
    return EXIT_OK


def cmd_batch(args: argparse.Namespace) -> int:
    """``pytti batch FOLDER|FILES… [--skip-invalid]``."""
    return _run_batch(
        args.scenes,
        out_root=args.out,
        device=args.device,
        overrides=args.set,
        sweep=args.sweep,
        skip_invalid=args.skip_invalid,
        deployment=None if args.in_process else args.deployment,
    )


def cmd_sweep(args: argparse.Namespace) -> int:
    """``pytti render SCENE --sweep KEY=V1,V2 …``: the cartesian product as one batch.

    Each combination renders into ``<--out or the renders root>/<scene stem>/<key=value,…>``.
    """
    return _run_batch(
        [args.scene],
        out_root=args.out,
        device=args.device,
        overrides=args.set,
        sweep=args.sweep,
        skip_invalid=False,
        deployment="render-scene/render-one",  # used when the server has it; else in process
    )


def _apply_worker_settings(args: argparse.Namespace) -> list[str]:
    """Put ``--renders-root`` / ``--allowed-*-roots`` into the environment that served runs inherit;
    returns the settings in effect (``NAME=value``), options or inherited environment alike."""
    from pytti_engine.confine import INPUT_ROOTS_ENV, OUTPUT_ROOTS_ENV, RENDERS_ROOT_ENV

    options = {
        RENDERS_ROOT_ENV: args.renders_root,
        INPUT_ROOTS_ENV: args.allowed_input_roots,
        OUTPUT_ROOTS_ENV: args.allowed_output_roots,
    }
    for name, value in options.items():
        if value is not None:
            os.environ[name] = value
    return [f"{name}={os.environ[name]}" for name in options if os.environ.get(name)]


def cmd_serve(args: argparse.Namespace) -> int:
    """``pytti serve``: serve deploy/prefect.yaml's deployments (with schedules) from this process."""
    for key, value in _PREFECT_DEFAULTS.items():
        os.environ.setdefault(key, value)
    settings = _apply_worker_settings(args)
    from flows.serve import deployments_from_file, serve_file

    try:
        deployments = deployments_from_file(Path(args.prefect_file), args.only or None)
    except PyttiError as e:
        return _error(str(e))
    shown = ", ".join(settings) or "none (renders in ./renders, paths not confined)"
    print(f"worker settings: {shown}", file=sys.stderr)
    if args.dry_run:
        for d in deployments:
            schedules = ", ".join(_describe_schedule(s.schedule) for s in d.schedules or []) or "-"
            print(f"{d.flow_name}/{d.name}  schedules: {schedules}")
        return EXIT_OK
    serve_file(Path(args.prefect_file), args.only or None, limit=args.limit)
    return EXIT_OK


def cmd_crash_detection(args: argparse.Namespace) -> int:
    """``pytti crash-detection``: install the automation that marks heartbeat-less runs Crashed."""
    for key, value in _PREFECT_DEFAULTS.items():
        os.environ.setdefault(key, value)
    from flows.serve import ZOMBIE_AUTOMATION, install_zombie_automation

    automation_id = install_zombie_automation(args.heartbeat_seconds, args.missed)
    print(
        f"automation {ZOMBIE_AUTOMATION} ({automation_id}): runs without a heartbeat for "
        f"{args.missed} x {args.heartbeat_seconds} s are marked Crashed. Workers must run with "
        f"PREFECT_FLOWS_HEARTBEAT_FREQUENCY={args.heartbeat_seconds}."
    )
    return EXIT_OK


def add_sweep_option(parser: argparse.ArgumentParser) -> None:
    """``--sweep KEY=V1,V2`` (repeatable): render the cartesian product of the values."""
    parser.add_argument(
        "--sweep",
        action="append",
        default=[],
        metavar="KEY=V1,V2",
        help="render every combination of these values, each in its own run directory (repeatable)",
    )


def register(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add ``batch``, ``serve`` and ``crash-detection`` to the ``pytti`` parser."""
    batch = subparsers.add_parser("batch", help="render a folder or list of scene files, each as its own run")
    batch.add_argument("scenes", nargs="+", metavar="FOLDER|FILE", help="scene files or folders of *.yaml")
    batch.add_argument(
        "--out",
        help="each scene renders into OUT/<stem> (default: the renders root, $PYTTI_RENDERS_ROOT or ./renders)",
    )
    batch.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default: auto)")
    batch.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override in every scene"
    )
    add_sweep_option(batch)
    batch.add_argument(
        "--skip-invalid", action="store_true", help="render the valid scenes even if some are not"
    )
    batch.add_argument(
        "--deployment",
        default="render-scene/render-one",
        help="render each scene as a run of this deployment when the server has it (default: %(default)s)",
    )
    batch.add_argument("--in-process", action="store_true", help="render in this process even if it exists")
    batch.set_defaults(func=cmd_batch)

    serve = subparsers.add_parser("serve", help="serve the deployments (with schedules) from this process")
    serve.add_argument("--prefect-file", default="deploy/prefect.yaml", help="default: %(default)s")
    serve.add_argument(
        "--only", action="append", default=[], metavar="NAME", help="serve only this deployment"
    )
    serve.add_argument("--limit", type=int, default=1, help="runs at once (one per GPU; default 1)")
    serve.add_argument("--dry-run", action="store_true", help="list what would be served, then exit")
    serve.add_argument(
        "--renders-root",
        metavar="DIR",
        help="default run directories go here, and relative out_dir/out_root are inside it "
        "(sets PYTTI_RENDERS_ROOT; default ./renders)",
    )
    serve.add_argument(
        "--allowed-input-roots",
        metavar="DIR:DIR",
        help="served runs may read scene files and the files scenes name only inside these folders "
        "(sets PYTTI_ALLOWED_INPUT_ROOTS)",
    )
    serve.add_argument(
        "--allowed-output-roots",
        metavar="DIR:DIR",
        help="served runs may write run directories only inside these folders (sets PYTTI_ALLOWED_OUTPUT_ROOTS)",
    )
    serve.set_defaults(func=cmd_serve)

    crash = subparsers.add_parser(
        "crash-detection", help="install the automation that marks runs whose heartbeats stopped as Crashed"
    )
    crash.add_argument("--heartbeat-seconds", type=int, default=180, help="the workers' heartbeat (>= 30)")
    crash.add_argument("--missed", type=int, default=3, help="missed heartbeats before Crashed (default 3)")
    crash.set_defaults(func=cmd_crash_detection)


def _describe_schedule(schedule: object) -> str:
    """A cron schedule as ``"<cron> <timezone>"``; any other kind by its own text."""
    cron = getattr(schedule, "cron", None)
    return f"{cron} {getattr(schedule, 'timezone', None) or 'UTC'}" if cron else str(schedule)
