"""The ``pytti`` command: a thin layer over the flows and the engine.

Exit codes: 0 done, 2 bad input (scene, paths, models, options), 1 runtime failure.
"""

import argparse
import contextlib
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from flows.stopping import exit_code, stop_on_signals, stop_signal, stopped_line
from flows.temp_api import API_COMMANDS, TemporaryApiError, early_start
from pytti_engine.errors import ModelLoadError, PyttiError

EXIT_OK, EXIT_FAILURE, EXIT_BAD_INPUT = 0, 1, 2

# Prefect reads these when it is first imported; keep runs local and quiet unless the user says otherwise.
_PREFECT_DEFAULTS = {
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_LOGGING_EXTRA_LOGGERS": "pytti_engine",
}


def _error(message: str) -> int:
    print(f"pytti: error: {message}", file=sys.stderr)
    return EXIT_BAD_INPUT


def _runtime_error(message: str) -> int:
    print(f"pytti: error: {message}", file=sys.stderr)
    return EXIT_FAILURE


def _prepare_environment() -> None:
    for key, value in _PREFECT_DEFAULTS.items():
        os.environ.setdefault(key, value)


def _check_render_inputs(
    scene: Path, out: Path | None, device: str, overrides: Sequence[str], replace: bool = False
) -> Path:
    """Check everything a render needs before Prefect or a model is started; returns the run dir.

    In order: the device's spelling, the allowed roots (before the scene file is read), the scene and
    what it needs on this machine (:func:`flows.params.resolve_scene`, which runs the preflight:
    models, inputs, values, the device), then the run directory: not being rendered by another
    process, holding no other render (unless ``replace``), writable.
    """
    from flows.params import RenderParams, resolve_scene
    from pytti_engine.devices import resolve_device
    from pytti_engine.identity import check_run_dir
    from pytti_engine.rundir import ensure_writable

    resolve_device(device)  # a misspelt --device is one line here, not a parameter validation error
    params = RenderParams(
        scene_path=str(scene),
        out_dir=str(out.absolute()) if out is not None else None,  # --out is relative to this folder
        device=device,
        overrides=list(overrides),
        replace=replace,
    )
    source = resolve_scene(params)
    for note in source.report.notes if source.report else ():
        print(f"note: {note}", file=sys.stderr)
    run_dir = Path(source.out_dir)
    check_run_dir(run_dir, source.identity, replace=replace)
    ensure_writable(run_dir)
    return run_dir


def _run_render(
    scene: Path,
    out: Path | None,
    device: str,
    overrides: Sequence[str],
    verbose: bool = False,
    *,
    replace: bool = False,
) -> int:
    try:
        run_dir = _check_render_inputs(scene, out, device, overrides, replace)
    except PyttiError as e:
        return _error(str(e))
    _prepare_environment()
    from flows import progress
    from flows.pipes import keep_output_alive

    keep_output_alive()  # `pytti render | head`, a closed ssh session: the render goes on
    from flows.render_scene import RenderParams, render_scene
    from flows.temp_api import ensure_ready

    terminal = progress.install(verbose=verbose)
    params = RenderParams(
        scene_path=str(scene), out_dir=str(run_dir), device=device, overrides=list(overrides), replace=replace
    )
    signum: int | None = None
    try:
        ensure_ready()  # Prefect's temporary API, started at the command's start, answers (or one line)
        summary = render_scene(params)
    except PyttiError as e:
        return _error(str(e))
    except TemporaryApiError as e:
        return _runtime_error(str(e))
    except BaseException as e:  # the last line of defence: a stop, or a failure reported in one line
        if (signum := stop_signal(e)) is None and not isinstance(e, Exception):
            raise
        if signum is None:
            return _render_failed(e, run_dir / progress.LOG_NAME)
    finally:
        terminal.close()
    if signum is not None:  # Ctrl-C, SIGTERM: the frame in progress was abandoned, the API is still up
        print(stopped_line(signum, run_dir), file=sys.stderr)
        return exit_code(signum)
    print(
        f"done: {summary.video} — {summary.frames} frames ({summary.rendered} rendered, "
        f"{summary.skipped} kept) in {summary.seconds:.1f} s; log: {Path(summary.run_dir) / progress.LOG_NAME}"
    )
    return EXIT_OK


def _render_failed(error: BaseException, log: Path) -> int:
    """Report a render's unexpected failure in one line (and where its full log is); exit 1."""
    from flows.cli_deploy import api_refusal

    if (refusal := api_refusal(error)) is not None:
        return _error(refusal)
    print(f"pytti: render failed: {type(error).__name__}: {error}", file=sys.stderr)
    if log.is_file():
        print(f"pytti: the full log is in {log}", file=sys.stderr)
    return EXIT_FAILURE


def cmd_render(args: argparse.Namespace) -> int:
    """``pytti render SCENE``."""
    if args.sweep:
        from flows.cli_deploy import cmd_sweep

        return cmd_sweep(args)
    out = Path(args.out) if args.out else None
    return _run_render(
        Path(args.scene), out, args.device, args.set, verbose=args.verbose, replace=args.replace
    )


def _demo_scene() -> Path:
    import scenes

    return Path(scenes.__file__).resolve().parent / "demo.yaml"


TOY_DEMO_PROMPTS = ("a red circle:2 | a blue square:-1", "a yellow square:2 | a green circle:-1")
"""Prompts the toy perceptor knows, one per demo scene (cycled): the offline demo turns red, then yellow."""


def _cache_root() -> Path:
    """Where the CLI keeps what it makes once per machine (the toy perceptor): ``$XDG_CACHE_HOME/pytti-flow``."""
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return cache / "pytti-flow"


def _demo_overrides(scene_path: Path) -> tuple[list[str], str | None]:
    """Overrides that swap in the toy perceptor, and prompts it knows, when the demo's weights are missing.

    Returns:
        The overrides (none when the real weights load) and the first line of the load error.
    """
    from pytti_engine.scene import load_scene
    from pytti_engine.toy import cached_toy, read_toy_report, toy_cache_folder
    from tasks.resident import perceptor

    scene = load_scene(scene_path)
    try:
        for spec in scene.perceptors:
            perceptor(spec.model, spec.pretrained, "cpu", spec.quick_gelu)
    except ModelLoadError as e:
        if read_toy_report(toy_cache_folder(_cache_root())) is None:
            print("training the toy perceptor (once per machine, about 20 s on a CPU) ...", file=sys.stderr)
        toy = cached_toy(_cache_root())
        overrides = [f"perceptors=[{{model: 'local-dir:{toy}'}}]"]
        overrides += [
            f"scenes.{i}.prompts={TOY_DEMO_PROMPTS[i % len(TOY_DEMO_PROMPTS)]}"
            for i in range(len(scene.scenes))
        ]
        return overrides, str(e).splitlines()[0]
    return [], None


def cmd_demo(args: argparse.Namespace) -> int:
    """``pytti demo``: render the bundled demo scene to renders/demo/demo.mp4."""
    scene = _demo_scene()
    try:
        overrides, missing = _demo_overrides(scene)
    except PyttiError as e:
        return _error(str(e))
    shown = " then ".join(repr(p) for p in TOY_DEMO_PROMPTS)
    notice = (
        f"NOTE: the demo's CLIP weights are not available offline ({missing}).\n"
        "NOTE: rendering with the TOY perceptor instead: a tiny CLIP trained on this machine on drawn "
        "coloured shapes. It knows four colours (red, green, blue, yellow) and, barely, two shapes, so the "
        f"demo's prompts are replaced by {shown}: the video turns red, then yellow. The motion, frames "
        "and video are real; the imagery follows a model that knows colours, not lighthouses."
    )
    if missing:
        print(notice, file=sys.stderr)
    code = _run_render(  # the demo's own folder: a run with or without the stand-in is the same demo
        scene, Path(args.out), args.device, overrides, verbose=args.verbose, replace=True
    )
    if missing:
        print(notice, file=sys.stderr)
    return code


def cmd_models_stand_in(args: argparse.Namespace) -> int:
    """``pytti models stand-in DIR`` (a CLIP) or ``pytti models stand-in --vqgan DIR`` (a VQGAN)."""
    if args.vqgan:
        return _vqgan_stand_in(args)
    from pytti_engine.perceptors import write_stand_in

    start = time.perf_counter()
    try:
        out = write_stand_in(Path(args.dir), seed=args.seed)
    except (OSError, PyttiError) as e:
        return _error(f"cannot write the stand-in model to {args.dir}: {e}")
    size = sum(f.stat().st_size for f in out.iterdir() if f.is_file())
    print(
        f"wrote a random-weight stand-in open_clip model to {out} ({size / 1e6:.1f} MB, {time.perf_counter() - start:.1f} s)"
    )
    print(f"use it in a scene as:  perceptors: [{{model: 'local-dir:{out}'}}]")
    return EXIT_OK


def _vqgan_stand_in(args: argparse.Namespace) -> int:
    from pytti_engine.image_params.vqgan import write_vqgan_stand_in

    kind = {"openimages": "gumbel", "sflckr": "net2net", "coco": "net2net"}.get(args.name, "vq")
    try:
        config, ckpt = write_vqgan_stand_in(Path(args.dir), name=args.name, kind=kind, seed=args.seed)
    except (OSError, PyttiError) as e:
        return _error(f"cannot write the stand-in VQGAN to {args.dir}: {e}")
    print(f"wrote a random-weight stand-in VQGAN ({kind}, taming layout) to {config} and {ckpt.name}")
    print(
        f"use it in a scene as:  image_model: vqgan, vqgan_model: {args.name}, models_dir: {Path(args.dir)}"
    )
    return EXIT_OK


def _vqgan_rows() -> list[tuple[str, str]]:
    """``(vqgan:NAME, where)`` for PyTTI's five VQGANs; where is ``""`` when the files are not local."""
    from pytti_engine.vqgan_files import KNOWN_VQGANS, find_vqgan_files

    rows = []
    for name in KNOWN_VQGANS:
        try:
            rows.append((f"vqgan:{name}", str(find_vqgan_files(name).checkpoint)))
        except ModelLoadError:
            rows.append((f"vqgan:{name}", ""))
    return rows


def cmd_models_toy(args: argparse.Namespace) -> int:
    """``pytti models toy DIR``: train the toy perceptor into DIR."""
    from pytti_engine.toy import ToyTraining, toy_captions, write_toy

    out = Path(args.dir)
    try:
        out.mkdir(parents=True, exist_ok=True)  # fail before training, not after
        print(f"training the toy perceptor into {out} (about 20 s on a CPU) ...", file=sys.stderr)
        report = write_toy(out, ToyTraining(seed=args.seed))
    except (OSError, PyttiError) as e:
        return _error(f"cannot write the toy perceptor to {out}: {e}")
    print(
        f"trained a toy open_clip model into {out} in {report.seconds:.1f} s ({report.steps} steps): "
        f"zero-shot accuracy on fresh pictures {report.colour_accuracy:.0%} for the colour, "
        f"{report.caption_accuracy:.0%} for colour and shape"
    )
    print(f"it knows captions like: {', '.join(toy_captions()[:4])}, ... (colour words matter most)")
    print(f"use it in a scene as:  perceptors: [{{model: 'local-dir:{out}'}}]")
    return EXIT_OK


def cmd_models_list(args: argparse.Namespace) -> int:
    """``pytti models list``: open_clip models with pretrained tags, and which are available locally."""
    from pytti_engine.perceptors import available_models

    rows = available_models()
    if args.local:
        rows = [r for r in rows if r[2]]
    for model, tag, cached in rows:
        print(f"{'local  ' if cached else '-      '}{model}:{tag}")
    print(f"{sum(r[2] for r in rows)} of {len(rows)} (model, tag) pairs have weights in the local cache")
    vqgans = [r for r in _vqgan_rows() if r[1] or not args.local]
    for spec, where in vqgans:
        print(f"{'local  ' if where else '-      '}{spec}{f'  ({where})' if where else ''}")
    return EXIT_OK


def _fetch_vqgan(name: str) -> int:
    """Download one of PyTTI's VQGANs from its hub copy into the Hugging Face cache."""
    from pytti_engine.vqgan_files import HUB_REPO, KNOWN_VQGANS, hub_cache_dir, hub_filenames

    if name not in KNOWN_VQGANS:
        return _error(f"unknown VQGAN {name!r}: one of {', '.join(KNOWN_VQGANS)}")
    from huggingface_hub import hf_hub_download

    paths = []
    for filename in hub_filenames(name):
        try:
            paths.append(hf_hub_download(HUB_REPO, filename, cache_dir=hub_cache_dir()))
        except Exception as e:  # noqa: BLE001 - offline, missing file, HTTP error: one line, exit 2
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            return _error(f"cannot download {HUB_REPO}/{filename}: {reason}")
    print(f"vqgan:{name}: {paths[0]} and {Path(paths[1]).name} are in the Hugging Face cache")
    return EXIT_OK


def cmd_models_fetch(args: argparse.Namespace) -> int:
    """``pytti models fetch MODEL:TAG`` (or ``vqgan:NAME``): download weights into the Hugging Face cache."""
    from pytti_engine.perceptors import load_perceptor

    model, sep, tag = args.spec.partition(":")
    if model == "vqgan" and sep:
        return _fetch_vqgan(tag)
    if not sep or not tag:
        return _error(f"expected MODEL:TAG (e.g. ViT-B-32:openai), got {args.spec!r}")
    try:
        perceptor = load_perceptor(model, tag, device="cpu")
    except PyttiError as e:
        return _error(str(e))
    print(f"{perceptor.name}: weights are in the local cache ({perceptor.identity})")
    return EXIT_OK


def _add_verbose(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="also print Prefect's lines (one per task); progress then goes one line per frame",
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``pytti``."""
    parser = argparse.ArgumentParser(
        prog="pytti", description="Render CLIP-guided animations from scene files."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    render = sub.add_parser("render", help="render a scene file to a video")
    render.add_argument("scene", help="the scene YAML file")
    render.add_argument(
        "--out",
        help="run directory (default: <renders root>/<scene stem>[/<overrides>], never another render's; "
        "the renders root is $PYTTI_RENDERS_ROOT or ./renders)",
    )
    render.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default: auto)")
    render.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override a scene key"
    )
    render.add_argument(
        "--replace",
        action="store_true",
        help="take over a run directory that holds another render (other scene file or overrides): "
        "its frames that this render would reproduce are kept, the rest of it is removed",
    )
    render.add_argument(
        "--sweep",
        action="append",
        default=[],
        metavar="KEY=V1,V2",
        help="render every combination (repeatable)",
    )
    _add_verbose(render)
    render.set_defaults(func=cmd_render)

    demo = sub.add_parser("demo", help="render the bundled demo scene to renders/demo/demo.mp4")
    demo.add_argument("--out", default="renders/demo", help="run directory (default: renders/demo)")
    demo.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default: auto)")
    _add_verbose(demo)
    demo.set_defaults(func=cmd_demo)

    models = sub.add_parser("models", help="manage perceptor models")
    models_sub = models.add_subparsers(dest="models_command", required=True, metavar="ACTION")
    stand_in = models_sub.add_parser(
        "stand-in",
        help="write a tiny random-weight open_clip model (local-dir layout), or with --vqgan a VQGAN "
        "(taming layout, in DIR/vqgan/)",
    )
    stand_in.add_argument("dir", help="folder to write")
    stand_in.add_argument("--seed", type=int, default=0)
    stand_in.add_argument("--vqgan", action="store_true", help="write a VQGAN instead of a CLIP model")
    stand_in.add_argument(
        "--name",
        default="imagenet",
        choices=["imagenet", "wikiart", "sflckr", "coco", "openimages"],
        help="--vqgan: which model's layout and file names (default imagenet)",
    )
    stand_in.set_defaults(func=cmd_models_stand_in)
    toy = models_sub.add_parser(
        "toy", help="train a tiny open_clip model that knows colours (seconds, CPU; local-dir layout)"
    )
    toy.add_argument("dir", help="folder to write")
    toy.add_argument("--seed", type=int, default=0)
    toy.set_defaults(func=cmd_models_toy)
    listing = models_sub.add_parser("list", help="open_clip models and tags, and which weights are local")
    listing.add_argument("--local", action="store_true", help="only those with weights in the local cache")
    listing.set_defaults(func=cmd_models_list)
    fetch = models_sub.add_parser(
        "fetch", help="download MODEL:TAG (or vqgan:NAME) weights into the Hugging Face cache"
    )
    fetch.add_argument("spec", metavar="MODEL:TAG")
    fetch.set_defaults(func=cmd_models_fetch)

    from flows import cli_deploy, cli_motion, cli_runs, cli_scene

    for module in (cli_scene, cli_motion, cli_deploy, cli_runs):
        module.register(sub)
    return parser


def _scene_loads(args: argparse.Namespace) -> bool:
    """A quick look (no torch, well under a second) at the scene of ``render``/``fork``: False when it is
    outside the allowed roots or does not load, so that bad input starts nothing (the full check then
    reports it); True for commands without a scene argument."""
    scene = getattr(args, "scene", None)
    if not isinstance(scene, str) or getattr(args, "sweep", None):
        return True
    from pytti_engine.confine import check_input, input_roots
    from pytti_engine.scene import load_scene

    try:
        check_input(scene, "scene", input_roots())
        load_scene(Path(scene), getattr(args, "set", []))
    except Exception:  # noqa: BLE001 - any problem: leave the reporting to the full check
        return False
    return True


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``pytti`` console script."""
    args = build_parser().parse_args(argv)
    # Prefect's temporary API starts now, while torch and the models load (not for bad input)
    runs_flows = args.command in API_COMMANDS
    spawn = runs_flows and _scene_loads(args)
    # Ctrl-C/SIGTERM stop renders cleanly; other commands (serve: Prefect's runner) keep their own handling
    stopping = stop_on_signals() if runs_flows else contextlib.nullcontext()
    with early_start(args.command, spawn=spawn), stopping:
        try:
            return int(args.func(args))
        except TemporaryApiError as e:
            return _runtime_error(str(e))
        except BaseException as e:
            if (signum := stop_signal(e)) is None or not runs_flows:
                raise
            print(stopped_line(signum), file=sys.stderr)
            return exit_code(signum)


if __name__ == "__main__":
    sys.exit(main())
