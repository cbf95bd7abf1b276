"""Task: validate the scene, resolve the plan and lay out the run directory."""

import json
from pathlib import Path

from prefect import get_run_logger, task

from pytti_engine.devices import resolve_device
from pytti_engine.fetch import fetch_inputs, url_files
from pytti_engine.identity import drop_stale_frames
from pytti_engine.inputs import InputsRecord, changed_inputs, describe_changes, inputs_digest
from pytti_engine.io import atomic_write_text, sha256_file
from pytti_engine.job import check_renderable, plan_inputs, plan_keys
from pytti_engine.rundir import RunPaths, ensure_writable, fork_base_keys
from pytti_engine.scene import build_plan, load_scene
from tasks.records import RunRef


@task(name="prepare-run", persist_result=False)
def prepare_run(
    scene_path: str, out_dir: str, device: str, overrides: tuple[str, ...] = (), *, foreign: bool = False
) -> RunRef:
    """Load and validate the scene, then write ``scene.yaml``, ``run.json`` and ``plan.json``, and
    delete frames that cannot belong to this render (beyond its last frame; with ``foreign``, every
    frame of the render the directory was taken over from whose key differs).

    Call it while holding the run lock. Nothing is written before the scene has validated, so bad
    input never touches a run directory.
    """
    source = Path(scene_path).resolve()
    scene = load_scene(source, overrides)
    plan = build_plan(scene)
    check_renderable(plan, scene)
    resolved_device = str(resolve_device(device))
    root = Path(out_dir)
    ensure_writable(root)
    paths = RunPaths(root.resolve())
    atomic_write_text(paths.scene_yaml, source.read_text(encoding="utf-8"))
    run_info = {"scene_path": str(source), "overrides": list(overrides), "device": resolved_device}
    atomic_write_text(paths.run_json, json.dumps(run_info, indent=2) + "\n")
    plan_doc = plan.to_dict()
    record = InputsRecord.read(paths.inputs_json)  # the last render's inputs and the hash cache
    local = fetch_inputs(scene, paths.root)  # URL inputs: fetched once into <run>/inputs/
    inputs = plan_inputs(scene, plan, record.hashes.sha256, url_files(local))
    keys = plan_keys(scene, plan, fork_base_keys(paths), inputs, record.hashes.sha256)
    plan_doc["keys"] = keys
    atomic_write_text(paths.plan_json, json.dumps(plan_doc, indent=1) + "\n")
    changes = describe_changes(changed_inputs(record.inputs, inputs))
    record.write(paths.inputs_json, inputs)
    logger = get_run_logger()
    if changes:
        logger.warning("%s", changes)
    for note in scene.notes:
        logger.info("%s: %s", source.name, note)
    logger.info("%s: %d frames at %g fps -> %s", source.name, len(plan.frames), plan.fps, paths.root)
    dropped = drop_stale_frames(paths, keys, foreign=foreign)
    if dropped:
        logger.info(
            "removed %d frame(s) that do not belong to this render: %s", len(dropped), _ranges(dropped)
        )
    return RunRef(
        run_dir=str(paths.root),
        scene_path=str(source),
        overrides=tuple(overrides),
        device=resolved_device,
        frame_count=len(plan.frames),
        video_stem=source.stem,
        scene_sha256=sha256_file(source),
        inputs_sha256=inputs_digest(inputs),
    )


def _ranges(indices: list[int]) -> str:
    """``[1, 2, 3, 7, 9, 10]`` → ``"1-3, 7, 9-10"``."""
    parts: list[str] = []
    start = prev = indices[0]
    for i in [*indices[1:], None]:
        if i is not None and i == prev + 1:
            prev = i
            continue
        parts.append(f"{start}-{prev}" if prev > start else str(start))
        if i is not None:
            start = prev = i
    return ", ".join(parts)
