"""Task: validate the scene, resolve the plan and lay out the run directory."""

import json
from pathlib import Path

from prefect import get_run_logger, task

from pytti_engine.devices import resolve_device
from pytti_engine.io import atomic_write_text, sha256_file
from pytti_engine.job import check_renderable, plan_keys
from pytti_engine.rundir import RunPaths, default_run_dir, ensure_writable, fork_base_keys
from pytti_engine.scene import build_plan, load_scene
from tasks.records import RunRef


@task(name="prepare-run", persist_result=False)
def prepare_run(scene_path: str, out_dir: str | None, device: str, overrides: tuple[str, ...] = ()) -> RunRef:
    """Load and validate the scene, then write ``scene.yaml``, ``run.json`` and ``plan.json``.

    Nothing is written before the scene has validated, so bad input never touches a run directory.
    """
    source = Path(scene_path).resolve()
    scene = load_scene(source, overrides)
    plan = build_plan(scene)
    check_renderable(plan, scene)
    resolved_device = str(resolve_device(device))
    root = Path(out_dir) if out_dir else default_run_dir(source)
    ensure_writable(root)
    paths = RunPaths(root.resolve())
    atomic_write_text(paths.scene_yaml, source.read_text(encoding="utf-8"))
    run_info = {"scene_path": str(source), "overrides": list(overrides), "device": resolved_device}
    atomic_write_text(paths.run_json, json.dumps(run_info, indent=2) + "\n")
    plan_doc = plan.to_dict()
    plan_doc["keys"] = plan_keys(scene, plan, fork_base_keys(paths))
    atomic_write_text(paths.plan_json, json.dumps(plan_doc, indent=1) + "\n")
    logger = get_run_logger()
    for note in scene.notes:
        logger.info("%s: %s", source.name, note)
    logger.info("%s: %d frames at %g fps -> %s", source.name, len(plan.frames), plan.fps, paths.root)
    return RunRef(
        run_dir=str(paths.root),
        scene_path=str(source),
        overrides=tuple(overrides),
        device=resolved_device,
        frame_count=len(plan.frames),
        video_stem=source.stem,
        scene_sha256=sha256_file(source),
    )
