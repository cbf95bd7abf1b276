"""Durable frames (issue 5): Cached skips, corrupted checkpoints, incremental re-render, flow retry,
the run lock, retention, fork, and the manifest carried by the video."""

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.client.schemas.sorting import TaskRunSort

from flows.cli import main
from flows.render_scene import RenderParams, render_scene
from pytti_engine.errors import OutputError
from pytti_engine.rundir import RunLock, RunPaths

MOVING = 'animation: 2d\ntranslate_x: 2\nrotate_2d: "3 * t"\n'


def _params(scene: Path, out: Path, **kw: Any) -> RenderParams:
    return RenderParams(scene_path=str(scene), out_dir=str(out), device="cpu", **kw)


def _pngs(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((out / "frames").glob("*.png"))}


def _task_states(flow_run_id: Any) -> dict[str, str]:
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])),
            sort=TaskRunSort.EXPECTED_START_TIME_ASC,
        )
    return {r.name: r.state.name for r in runs if r.name.startswith("frame-") and r.state}


def test_done_frames_show_as_cached_in_prefect(write_scene: Callable[..., Path], tmp_path: Path) -> None:
    scene, out = write_scene(MOVING, frames=3), tmp_path / "run"
    render_scene(_params(scene, out))
    state = render_scene(_params(scene, out), return_state=True)
    summary = state.result()
    assert (summary.rendered, summary.skipped) == (0, 3)
    assert _task_states(state.state_details.flow_run_id) == {f"frame-00000{i}": "Cached" for i in (1, 2, 3)}


def test_corrupted_checkpoint_and_png_are_detected_and_redone(
    write_scene: Callable[..., Path], tmp_path: Path
) -> None:
    scene, out = write_scene(MOVING, frames=3), tmp_path / "run"
    render_scene(_params(scene, out))
    reference = _pngs(out)
    paths = RunPaths(out)
    ckpt = paths.checkpoint(2)
    ckpt.write_bytes(ckpt.read_bytes()[:200])  # truncated: frame 3 cannot continue from it
    paths.record(3).unlink()  # frame 3 is not done
    png = paths.frame_png(1)
    png.write_bytes(png.read_bytes()[:-8])  # a damaged PNG: frame 1 is not done either
    summary = render_scene(_params(scene, out))
    assert (summary.rendered, summary.skipped) == (2, 1)
    assert _pngs(out) == reference, "re-rendered frames must be byte-identical"


def test_incremental_rerender_keeps_frames_before_the_change(
    write_scene: Callable[..., Path], tmp_path: Path
) -> None:
    out = tmp_path / "run"
    render_scene(_params(write_scene(MOVING, frames=4), out))
    before = _pngs(out)
    edited = write_scene(
        'animation: 2d\ntranslate_x: 2\nrotate_2d: "3 * t + 10 * max(0, frame - 1)"\n', frames=4
    )
    summary = render_scene(_params(edited, out))
    assert (summary.rendered, summary.skipped) == (2, 2)
    after = _pngs(out)
    assert [after[k] == before[k] for k in sorted(before)] == [True, True, False, False]


def test_output_only_change_reencodes_without_rendering(
    write_scene: Callable[..., Path], tmp_path: Path
) -> None:
    out = tmp_path / "run"
    render_scene(_params(write_scene(MOVING, frames=2), out))
    summary = render_scene(_params(write_scene(MOVING + "output: {crf: 30}\n", frames=2), out))
    assert (summary.rendered, summary.skipped) == (0, 2)


def test_flow_retry_continues_from_the_last_done_frame(
    write_scene: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tasks.render as task_module

    real = task_module.render_frame
    calls: list[int] = []

    def flaky(state: Any, frame: Any, ctx: Any, on_step: Any = None) -> Any:
        calls.append(frame.index)
        if frame.index == 3 and calls.count(3) == 1:
            raise RuntimeError("simulated crash at frame 3")
        return real(state, frame, ctx, on_step=on_step)

    monkeypatch.setattr(task_module, "render_frame", flaky)
    scene, out = write_scene(MOVING, frames=4), tmp_path / "run"
    summary = render_scene.with_options(retries=1, retry_delay_seconds=0)(_params(scene, out))
    assert calls == [1, 2, 3, 3, 4], "frames 1-2 must come back from the run directory on the retry"
    assert (summary.rendered, summary.skipped) == (2, 2)


def test_second_render_into_a_locked_directory_is_refused(
    write_scene: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    with RunLock(out):
        with pytest.raises(OutputError, match="being rendered by pid"):
            RunLock(out).__enter__()
        code = main(["render", str(write_scene(frames=1)), "--out", str(out), "--device", "cpu"])
        assert code == 2
        assert "being rendered" in capsys.readouterr().err
    with RunLock(out):  # released: usable again
        pass


def test_retention_keeps_every_kth_and_rebuilds_state(
    write_scene: Callable[..., Path], tmp_path: Path
) -> None:
    full = tmp_path / "full"
    render_scene(_params(write_scene(MOVING, frames=5), full))
    out = tmp_path / "kept"
    render_scene(_params(write_scene(MOVING + "keep_checkpoints: 'every:2'\n", name="k.yaml", frames=5), out))
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["000002.pt", "000004.pt", "000005.pt"]
    assert _pngs(out) == _pngs(full)
    # frame 5 is lost: it must continue from checkpoint 4; then frame 4 too: rebuilt from checkpoint 2
    paths = RunPaths(out)
    for i in (4, 5):
        paths.record(i).unlink()
        paths.checkpoint(i).unlink()
    summary = render_scene(
        _params(write_scene(MOVING + "keep_checkpoints: 'every:2'\n", name="k.yaml", frames=5), out)
    )
    assert (summary.rendered, summary.skipped) == (2, 3)
    assert _pngs(out) == _pngs(full)


def test_fork_continues_from_frame_k_with_another_scene(
    write_scene: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = tmp_path / "base"
    render_scene(_params(write_scene(MOVING, frames=3), base))
    other = write_scene(
        'animation: 2d\nzoom: 1.2\nscenes:\n  - prompts: "a blue square:1"\n    frames: 4\n', name="o.yaml"
    )
    branch = tmp_path / "branch"
    code = main(["fork", str(base), "--at", "2", str(other), "--out", str(branch), "--device", "cpu"])
    assert code == 0, capsys.readouterr().err
    base_pngs, branch_pngs = _pngs(base), _pngs(branch)
    assert [branch_pngs[f"00000{i}.png"] == base_pngs[f"00000{i}.png"] for i in (1, 2)] == [True, True]
    assert len(branch_pngs) == 4 and branch_pngs["000003.png"] != base_pngs["000003.png"]
    assert "4 frames (2 rendered, 2 kept)" in capsys.readouterr().out


def test_manifest_round_trip_through_the_video(
    write_scene: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    summary = render_scene(_params(write_scene(MOVING, frames=2), out))
    manifest = json.loads((out / "manifest.json").read_text())
    assert [f["index"] for f in manifest["frames"]] == [1, 2]
    assert manifest["versions"]["torch"] != "-" and manifest["scene"]["seed"] == 3
    assert manifest["run"]["device"] == "cpu"
    (perceptor,) = manifest["models"]["perceptors"]
    assert perceptor["name"].startswith("local-dir:") and "sha256=" in perceptor["identity"]
    assert main(["info", summary.video]) == 0
    printed = capsys.readouterr().out
    embedded = json.loads(printed[printed.index("{") :])
    assert embedded["frame_count"] == 2 and embedded["last_key"] == manifest["frames"][-1]["key"]
    assert embedded["scene"] == manifest["scene"] and embedded["models"] == manifest["models"]


def test_out_of_memory_is_retried_and_recorded(
    write_scene: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    import tasks.render as task_module
    from pytti_engine.render import OutOfMemoryError

    real = task_module.render_frame
    calls: list[int] = []

    def oom_once(state: Any, frame: Any, ctx: Any, on_step: Any = None) -> Any:
        calls.append(frame.index)
        if frame.index == 2 and calls.count(2) == 1:
            # what the engine's render_frame really raises: torch's error wrapped with advice
            try:
                raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
            except torch.OutOfMemoryError as e:
                raise OutOfMemoryError("frame 2: out of memory (simulated)") from e
        if frame.index == 3:
            raise ValueError("not transient")
        return real(state, frame, ctx, on_step=on_step)

    monkeypatch.setattr(task_module, "render_frame", oom_once)
    monkeypatch.setattr(task_module.render_frame_task, "retry_delay_seconds", [0, 0])
    out = tmp_path / "run"
    state = render_scene(_params(write_scene(MOVING, frames=3), out), return_state=True)
    assert state.is_failed()
    assert calls == [1, 2, 2, 3], "OOM is retried, other errors are not"
    assert json.loads((out / "records" / "000002.json").read_text())["attempts"] == 2


def test_a_frame_over_its_timeout_fails_the_render_at_that_frame(
    write_scene: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import time

    import tasks.render as task_module

    real = task_module.render_frame
    woke: list[int] = []

    def slow_second_frame(state: Any, frame: Any, ctx: Any, on_step: Any = None) -> Any:
        if frame.index == 2:
            # A stuck frame as a render is stuck: many short operations (Prefect's timeout raises in
            # the frame's thread between Python operations; it cannot cut one long C call short).
            for _ in range(1200):
                time.sleep(0.1)
            woke.append(frame.index)
        return real(state, frame, ctx, on_step=on_step)

    monkeypatch.setattr(task_module, "render_frame", slow_second_frame)
    out = tmp_path / "run"
    # frame 1 (which loads the model) must fit in the timeout on a machine loaded 3-4x
    start = time.monotonic()
    state = render_scene(_params(write_scene(MOVING, frames=3), out, frame_timeout_s=6.0), return_state=True)
    assert state.is_failed() and "timed out" in str(state.message)
    assert woke == [], "the timeout interrupts the frame"
    assert time.monotonic() - start < 90, "the stuck frame was cut short, not waited out (120 s)"
    assert (out / "records" / "000001.json").is_file() and not (out / "records" / "000002.json").exists()


def test_editing_a_mask_in_place_rerenders_from_its_first_frame_and_says_so(
    write_scene: Callable[..., Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from PIL import Image

    mask = tmp_path / "mask.png"
    Image.new("RGB", (8, 8), (255, 255, 255)).save(mask)
    body = MOVING + (
        'scenes:\n  - prompts: "a red circle:1"\n    frames: 2\n'
        '  - prompts: "a red circle:1_[mask.png]"\n    frames: 2\n'
    )
    scene, out = write_scene(body), tmp_path / "run"
    argv = ["render", str(scene), "--out", str(out), "--device", "cpu"]
    assert main(argv) == 0
    before = _pngs(out)
    caplog.clear()
    Image.new("RGB", (8, 8), (0, 0, 0)).save(mask)  # edited in place: same path, other pixels
    assert main(argv) == 0
    lines = [r.getMessage() for r in caplog.records if "changed since the last render" in r.getMessage()]
    assert len(lines) == 1 and f"scenes[1] image mask {mask} (read from frame 3)" in lines[0], caplog.text
    assert "\n" not in lines[0] and "frames 3 and later render again" in lines[0]
    assert [r.levelname for r in caplog.records if r.getMessage() == lines[0]] == [
        "WARNING"
    ]  # shown by default
    after = _pngs(out)
    assert [after[k] == before[k] for k in sorted(before)] == [True, True, False, False]
    assert lines[0] in (out / "render.log").read_text()
    inputs = json.loads((out / "inputs.json").read_text())["inputs"]
    assert {(i["field"], i["first_frame"]) for i in inputs} >= {("scenes[1] image mask", 3)}
