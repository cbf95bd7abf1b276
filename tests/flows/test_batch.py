"""The batch flow in process: validate all first, a failing scene does not stop the others, re-runs resume."""

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

import tasks.render
from flows.batch import BatchFailed, BatchInvalid, BatchParams, batch_render
from pytti_engine.errors import PyttiError
from pytti_engine.identity import override_label
from tasks.batch import parse_sweep, plan_jobs

REPO = Path(__file__).resolve().parents[2]
BAD = 'scenes:\n  - prompts: "a:1"\n    frames: 2\nzoom: "1 + nope(t)"\n'


def _three_scenes(write_scene: Callable[..., Path], tmp_path: Path) -> Path:
    folder = tmp_path / "queue"
    folder.mkdir()
    for name, size in (("a.yaml", 32), ("c.yaml", 40)):
        (folder / name).write_text(write_scene(name=name, frames=3, size=size).read_text())
    (folder / "b.yaml").write_text(write_scene(BAD, name="b.yaml").read_text())
    return folder


def _fail_frame_2_of_width_40(monkeypatch: pytest.MonkeyPatch) -> None:
    real = tasks.render.render_frame

    def flaky(state: Any, frame: Any, ctx: Any, **kwargs: Any) -> Any:
        if frame.index == 2 and ctx.settings.width == 40:
            raise RuntimeError("simulated GPU failure at frame 2")
        return real(state, frame, ctx, **kwargs)

    monkeypatch.setattr(tasks.render, "render_frame", flaky)


def test_an_invalid_scene_stops_the_batch_before_anything_starts(
    write_scene: Callable[..., Path], tmp_path: Path
) -> None:
    folder = _three_scenes(write_scene, tmp_path)
    (folder / "d.yaml").write_text("width: 3\n")
    params = BatchParams(scenes=[str(folder)], out_root=str(tmp_path / "out"), device="cpu")
    with pytest.raises(BatchInvalid) as err:
        batch_render(params)
    report = str(err.value)
    assert report.startswith("2 of 4 scene(s) are invalid")
    assert (
        "b.yaml:12:12: zoom: unknown function" in report and "nope" in report
    )  # file:line of the bad expression
    assert "d.yaml:1:" in report  # every invalid scene is reported, not just the first
    assert not (tmp_path / "out").exists()


def test_batch_renders_the_valid_scenes_and_resumes_the_failed_one(
    write_scene: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = _three_scenes(write_scene, tmp_path)
    out = tmp_path / "out"
    params = BatchParams(scenes=[str(folder)], out_root=str(out), device="cpu", skip_invalid=True)
    _fail_frame_2_of_width_40(monkeypatch)
    with pytest.raises(BatchFailed) as err:
        batch_render(params)
    rows = {Path(r.scene).name: r for r in err.value.summary.rows}
    assert rows["a.yaml"].status == "completed" and rows["a.yaml"].frames == "3/3"
    assert rows["a.yaml"].video == str((out / "a" / "a.mp4").resolve())
    assert rows["b.yaml"].status.startswith("invalid: ") and "b.yaml:12:" in rows["b.yaml"].status
    assert rows["c.yaml"].status.startswith("failed: ") and rows["c.yaml"].frames == "1/3"
    assert "simulated GPU failure" in rows["c.yaml"].status
    kept_a = (out / "a" / "frames" / "000003.png").stat().st_mtime_ns
    kept_c = (out / "c" / "frames" / "000001.png").stat().st_mtime_ns

    monkeypatch.undo()
    summary = batch_render(params)
    rows = {Path(r.scene).name: r for r in summary.rows}
    assert rows["a.yaml"].status == "kept (already finished)"
    assert rows["c.yaml"].status == "completed" and rows["c.yaml"].frames == "3/3"
    assert Path(rows["c.yaml"].video).is_file()
    assert (out / "a" / "frames" / "000003.png").stat().st_mtime_ns == kept_a
    assert (out / "c" / "frames" / "000001.png").stat().st_mtime_ns == kept_c  # resumed at frame 2
    with get_client(sync_client=True) as client:
        table = next(a for a in client.read_latest_artifacts() if a.key == "batch-summary")
    assert "kept (already finished)" in str(table.data) and str(out / "c" / "c.mp4") in str(table.data)


def test_an_empty_queue_folder_is_a_batch_with_nothing_to_do(tmp_path: Path) -> None:
    (tmp_path / "queue").mkdir()
    state = batch_render(
        BatchParams(scenes=[str(tmp_path / "queue")], out_root=str(tmp_path / "out")), return_state=True
    )
    assert state.is_completed() and state.result().rows == []
    with get_client(sync_client=True) as client:
        (note,) = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id])
            )
        )
    assert note.key == "batch-summary" and "nothing to render: no scene files" in str(note.data)


def test_the_nightly_queue_folder_ships_with_the_repository() -> None:
    from flows.serve import deployments_from_file

    (nightly,) = deployments_from_file(only=["nightly"])
    (queue,) = nightly.parameters["params"]["scenes"]
    assert (REPO / queue).is_dir(), "the nightly deployment's folder is in the repository"


def test_sweep_jobs_are_the_cartesian_product_each_in_its_own_dir(
    write_scene: Callable[..., Path], tmp_path: Path
) -> None:
    scene = write_scene()
    sweep = parse_sweep(["seed=1,2,3", "steps_per_frame=20,50"])
    jobs = plan_jobs([str(scene)], str(tmp_path), ["fps=6"], sweep)
    assert len(jobs) == 6
    assert jobs[0].overrides == ("fps=6", "seed=1", "steps_per_frame=20")
    assert jobs[-1].out_dir == str(tmp_path / "scene" / "seed=3,steps_per_frame=50")
    assert len({j.out_dir for j in jobs}) == 6
    assert override_label(["prompt=a cat/dog"]) == "prompt=a_cat_dog"
    with pytest.raises(PyttiError, match="expected KEY=V1,V2"):
        parse_sweep(["seed"])
    with pytest.raises(PyttiError, match="given twice"):
        parse_sweep(["seed=1", "seed=2"])
