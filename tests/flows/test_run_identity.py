"""No render ever overwrites another (issue 16.1), and a refused render never damages the run it was
refused from (issue 16.8): run identity, default folders, --replace, the lock before any write."""

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import flows.cli
from flows.cli import _check_render_inputs, main
from flows.params import RenderParams, resolve_scene
from flows.render_scene import render_scene
from pytti_engine.identity import RunIdentity, default_run_dir
from pytti_engine.rundir import RunLock
from pytti_engine.video import probe_video

TEXT = """\
width: 16
height: 16
seed: 3
steps_per_frame: 1
perceptors: [{{model: "local-dir:{model}"}}]
cutouts: 1
scenes: [{{prompts: "a red circle:1", frames: {frames}}}]
"""


@pytest.fixture
def renders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A renders root of its own (PYTTI_RENDERS_ROOT)."""
    root = tmp_path / "renders"
    monkeypatch.setenv("PYTTI_RENDERS_ROOT", str(root))
    return root


def _snapshot(folder: Path) -> dict[str, bytes]:
    """Every file of the run in ``folder`` (not the lock file, nor runs in sub-folders) and its bytes."""
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
        and p.name != ".lock"
        and ".prefect" not in p.parts
        and "=" not in str(p.relative_to(folder))
    }


def test_inline_text_with_other_typed_overrides_gets_another_folder(
    renders: Path, stand_in_dir: Path
) -> None:
    text = TEXT.format(model=stand_in_dir, frames=1)
    first = render_scene(RenderParams(scene_text=text, device="cpu"))
    before = _snapshot(Path(first.run_dir))
    second = render_scene(RenderParams(scene_text=text, device="cpu", seed=8, width=24))
    assert Path(first.run_dir).parent == renders and first.run_dir != second.run_dir
    assert Path(second.run_dir).name == "seed=8,width=24" and Path(second.run_dir).parent.name.startswith(
        "inline-"
    )
    assert _snapshot(Path(first.run_dir)) == before, "run 1's frames and video are untouched"
    assert probe_video(Path(second.video)).width == 24
    # the same text and overrides come back to the same folder, and `pytti resume` (which renders the
    # inline-<hash>.yaml recorded in run.json) is the same render
    assert resolve_scene(RenderParams(scene_text=text, seed=8, width=24)).out_dir == second.run_dir
    recorded = json.loads((Path(second.run_dir) / "run.json").read_text())
    resumed = _check_render_inputs(
        Path(recorded["scene_path"]), Path(second.run_dir), "cpu", recorded["overrides"]
    )
    assert resumed == Path(second.run_dir)


def test_same_stem_in_different_folders_never_share_a_folder(
    renders: Path, stand_in_dir: Path, tmp_path: Path
) -> None:
    scenes = {}
    for who in ("alice", "bob"):
        (tmp_path / who).mkdir()
        scenes[who] = tmp_path / who / "test.yaml"
        scenes[who].write_text(
            TEXT.format(model=stand_in_dir, frames=1).replace("seed: 3", f"seed: {len(who)}")
        )
    assert main(["render", str(scenes["alice"]), "--device", "cpu"]) == 0
    alice = _snapshot(renders / "test")
    assert main(["render", str(scenes["bob"]), "--device", "cpu"]) == 0
    assert _snapshot(renders / "test") == alice, "Bob's render must not touch Alice's folder"
    (bob_dir,) = [p for p in renders.iterdir() if p.name.startswith("test-")]
    assert (bob_dir / "test.mp4").is_file()
    for who, folder in (("alice", renders / "test"), ("bob", bob_dir)):  # each keeps its folder
        assert resolve_scene(RenderParams(scene_path=str(scenes[who]))).out_dir == str(folder)


def test_an_explicit_out_dir_of_another_render_is_refused_unless_replace(
    write_scene: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    a = write_scene(name="a.yaml", frames=3, size=16, steps=1)
    assert main(["render", str(a), "--out", str(out), "--device", "cpu"]) == 0
    before = _snapshot(out)
    b = write_scene(name="b.yaml", frames=2, size=16, steps=1, seed=9)
    capsys.readouterr()
    assert main(["render", str(b), "--out", str(out), "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "holds another render" in err and "--replace" in err
    assert str(a.resolve()) in err and str(b.resolve()) in err
    state = render_scene(RenderParams(scene_path=str(b), out_dir=str(out), device="cpu"), return_state=True)
    assert state.is_failed() and "holds another render" in str(state.message)  # from the API too
    assert main(["render", str(a), "--out", str(out), "--set", "seed=5", "--device", "cpu"]) == 2
    assert _snapshot(out) == before, "refused renders change nothing"

    assert main(["render", str(b), "--out", str(out), "--device", "cpu", "--replace"]) == 0
    assert sorted(p.name for p in (out / "frames").iterdir()) == ["000001.png", "000002.png"]
    assert sorted(p.name for p in (out / "records").iterdir()) == ["000001.json", "000002.json"]
    assert not (out / "a.mp4").exists() and probe_video(out / "b.mp4").frames == 2
    assert json.loads((out / "run.json").read_text())["scene_path"] == str(b.resolve())


def test_a_shortened_scene_leaves_no_frames_beyond_its_end(
    write_scene: Callable[..., Path], tmp_path: Path
) -> None:
    out = tmp_path / "run"
    render_scene(
        RenderParams(scene_path=str(write_scene(frames=3, size=16, steps=1)), out_dir=str(out), device="cpu")
    )
    shorter = write_scene(frames=2, size=16, steps=1)  # the same file, edited: the same run
    summary = render_scene(RenderParams(scene_path=str(shorter), out_dir=str(out), device="cpu"))
    assert (summary.rendered, summary.skipped) == (0, 2)
    for folder in ("frames", "records", "checkpoints"):
        assert len(list((out / folder).iterdir())) == 2, folder
    assert probe_video(out / "scene.mp4").frames == 2


def test_a_refused_render_leaves_the_run_it_was_refused_from_untouched(
    write_scene: Callable[..., Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Issue 16.8's sequence: render A is running; a second render into its directory with
    ``--set seed=8 --set steps_per_frame=5`` is refused; A's run.json/plan.json/scene.yaml and the
    provenance of its video are unchanged; a later ``pytti resume`` keeps A's finished frames."""
    scene, out = write_scene(frames=4, size=16, steps=1), tmp_path / "run"
    render_scene(RenderParams(scene_path=str(scene), out_dir=str(out), device="cpu"))
    for index in (3, 4):  # A is in the middle of frame 3
        (out / "records" / f"{index:06d}.json").unlink()
    (out / "scene.mp4").unlink()
    before = _snapshot(out)

    def prefect_must_not_start(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the lock is checked before Prefect starts")

    second = ["render", str(scene), "--out", str(out), "--set", "seed=8", "--set", "steps_per_frame=5"]
    with RunLock(out, note="render A"):  # render A holds its run directory
        with monkeypatch.context() as patched:
            patched.setattr("flows.render_scene.render_scene", prefect_must_not_start)
            assert main([*second, "--device", "cpu"]) == 2
        err = capsys.readouterr().err
        assert "is being rendered by pid" in err and "render A" in err and "Traceback" not in err
        params = RenderParams(
            scene_path=str(scene), out_dir=str(out), device="cpu", seed=8, steps_per_frame=5
        )
        state = render_scene(params, return_state=True)  # the same from the API, bypassing the CLI's check
        assert state.is_failed() and "is being rendered by" in str(state.message)
        assert _snapshot(out) == before, "nothing was written into A's directory"

    assert main(["resume", str(out)]) == 0
    assert "(2 rendered, 2 kept)" in capsys.readouterr().out
    after = _snapshot(out)
    assert all(after[f"frames/00000{i}.png"] == before[f"frames/00000{i}.png"] for i in (1, 2))
    assert json.loads((out / "manifest.json").read_text())["run"]["overrides"] == []
    assert main(["info", str(out / "scene.mp4")]) == 0
    printed = capsys.readouterr().out
    assert json.loads(printed[printed.index("{") :])["run"]["overrides"] == []


def test_default_run_dirs_skip_folders_of_other_renders(tmp_path: Path) -> None:
    root = tmp_path / "renders"
    alice = RunIdentity.of(tmp_path / "alice" / "test.yaml", [], root)
    bob = RunIdentity.of(tmp_path / "bob" / "test.yaml", [], root)
    assert default_run_dir(root, "test", alice) == root / "test"
    assert default_run_dir(root, "test", bob, taken={(root / "test").resolve(): alice}) == root / (
        f"test-{bob.digest[:8]}"
    )
    # a folder whose lock another render holds, before it wrote run.json, is not free either
    with RunLock(root / "test", note=f"render {alice.digest[:12]}"):
        assert default_run_dir(root, "test", alice) == root / "test"
        assert default_run_dir(root, "test", bob) == root / f"test-{bob.digest[:8]}"
    labelled = RunIdentity.of(tmp_path / "s.yaml", ["seed=1", "prompt=a cat/dog"], root)
    assert (
        default_run_dir(root, "s", labelled, label=labelled.overrides)
        == root / "s" / "seed=1,prompt=a_cat_dog"
    )
    assert RunIdentity.of(tmp_path / "s.yaml", [" seed = 1"], root) == RunIdentity.of(
        tmp_path / "s.yaml", ["seed=1"], root
    )


def test_check_is_before_prefect_for_a_foreign_dir_too(
    write_scene: Callable[..., Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "run.json").write_text(json.dumps({"scene_path": str(tmp_path / "other.yaml"), "overrides": []}))
    monkeypatch.setattr(flows.cli, "_prepare_environment", lambda: pytest.fail("Prefect must not start"))
    assert main(["render", str(write_scene(frames=1)), "--out", str(out)]) == 2
    assert "holds another render" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["run.json"]


def test_a_batch_gives_same_named_scenes_their_own_folders(
    write_scene: Callable[..., Path], tmp_path: Path
) -> None:
    from tasks.batch import plan_jobs

    for who in ("alice", "bob"):
        (tmp_path / who).mkdir()
        write_scene(name=f"{who}/test.yaml")
    jobs = plan_jobs([str(tmp_path / "alice"), str(tmp_path / "bob")], tmp_path / "out", [], {})
    assert [Path(j.out_dir).name for j in jobs][0] == "test"
    assert Path(jobs[1].out_dir).name.startswith("test-") and jobs[0].out_dir != jobs[1].out_dir
