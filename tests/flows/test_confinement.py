"""Allowed roots for runs from the API and the CLI (issue 16.2), the renders root (16.4), disk-full
messages and artifacts that never fail a render (16.8)."""

import errno
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import tasks.publish
import tasks.tolerant
from flows.batch import BatchParams, batch_render
from flows.cli import main
from flows.params import RenderParams
from flows.render_scene import render_scene
from pytti_engine.confine import INPUT_ROOTS_ENV, OUTPUT_ROOTS_ENV, RENDERS_ROOT_ENV
from pytti_engine.errors import DiskFullError
from pytti_engine.io import atomic_write_bytes

SHADOW = "root:$6$Zq1sEcReT$hAsHhAsH:20228:0:99999:7:::\nalice:$6$AnOtHeR$pAsSwOrD:20228:0:99999:7:::\n"


@pytest.fixture
def confined(tmp_path: Path, stand_in_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A worker confined to tmp/scenes (+ the model) for reading and tmp/renders for writing."""
    (tmp_path / "scenes").mkdir()
    (tmp_path / "renders").mkdir()
    (tmp_path / "private").mkdir()
    monkeypatch.setenv(INPUT_ROOTS_ENV, f"{tmp_path / 'scenes'}:{stand_in_dir}")
    monkeypatch.setenv(OUTPUT_ROOTS_ENV, str(tmp_path / "renders"))
    monkeypatch.setenv(RENDERS_ROOT_ENV, str(tmp_path / "renders"))
    return tmp_path


def _one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize("out", ["/etc/pytti-test-{pid}", "renders/../private/run", "renders/link/run"])
def test_the_cli_refuses_run_dirs_outside_the_output_roots(
    out: str, confined: Path, write_scene: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    (confined / "renders" / "link").symlink_to(confined / "private")
    scene = write_scene(name="scenes/s.yaml", frames=1)
    target = Path(out.format(pid=os.getpid())) if out.startswith("/") else confined / out
    try:
        assert main(["render", str(scene), "--out", str(target)]) == 2
        line = _one_line(capsys.readouterr().err)
        assert OUTPUT_ROOTS_ENV in line and "outside the allowed folders" in line
        assert not (confined / "private" / "run").exists() and not target.exists()
    finally:
        if out.startswith("/") and target.is_dir():  # only if the refusal failed: never leave it behind
            shutil.rmtree(target)


def test_api_runs_are_confined_before_any_work(
    confined: Path, write_scene: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    scene = write_scene(name="scenes/s.yaml", frames=1)
    outside = confined / "private" / "s.yaml"
    outside.write_text(scene.read_text())
    shadow = confined / "private" / "shadow"
    shadow.write_text(SHADOW)
    cases = {
        "out_dir": RenderParams(scene_path=str(scene), out_dir="../../somewhere", device="cpu"),
        "scene file": RenderParams(scene_path=str(outside), device="cpu"),
        "scene file ": RenderParams(scene_path=str(shadow), device="cpu"),
        "init_image": RenderParams(scene_text=scene.read_text() + f"init_image: {outside}\n", device="cpu"),
    }
    for what, params in cases.items():
        state = render_scene(params, return_state=True)
        message = str(state.message)
        assert state.is_failed() and what.strip() in message and INPUT_ROOTS_ENV[:13] in message, message
        assert "$6$" not in message and "alice" not in message
    assert sorted(p.name for p in (confined / "renders").iterdir()) == []  # not even a folder
    assert not (confined / "somewhere").exists()
    # relative out_dir from the API lands inside the renders root; then the render runs as usual
    summary = render_scene(RenderParams(scene_path=str(scene), out_dir="mine/run", device="cpu"))
    assert Path(summary.run_dir) == confined / "renders" / "mine" / "run"
    with pytest.raises(Exception, match=INPUT_ROOTS_ENV):  # a batch cannot list a folder outside
        batch_render(BatchParams(scenes=[str(confined / "private")], device="cpu"))


def test_a_non_scene_file_is_never_echoed_into_the_run_state(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shadow = tmp_path / "shadow"
    shadow.write_text(SHADOW)
    state = render_scene(RenderParams(scene_path=str(shadow), out_dir=str(tmp_path / "o")), return_state=True)
    assert state.is_failed() and "not a scene file" in str(state.message)
    assert "$6$" not in str(state.message) and "alice" not in str(state.message)
    assert main(["render", str(shadow), "--out", str(tmp_path / "o")]) == 2
    assert "alice" not in _one_line(capsys.readouterr().err)


def test_serve_takes_the_settings_as_options(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in (INPUT_ROOTS_ENV, OUTPUT_ROOTS_ENV, RENDERS_ROOT_ENV):
        monkeypatch.setenv(name, "")  # so that the test's end restores them, whatever serve sets
        monkeypatch.delenv(name)
    argv = ["serve", "--dry-run", "--only", "render-one", "--renders-root", str(tmp_path / "r")]
    argv += [
        "--allowed-output-roots",
        str(tmp_path / "r"),
        "--allowed-input-roots",
        f"{tmp_path}/a:{tmp_path}/b",
    ]
    assert main(argv) == 0
    assert os.environ[RENDERS_ROOT_ENV] == str(tmp_path / "r")  # served runs inherit them
    assert os.environ[INPUT_ROOTS_ENV] == f"{tmp_path}/a:{tmp_path}/b"
    printed = capsys.readouterr()
    assert f"{OUTPUT_ROOTS_ENV}={tmp_path / 'r'}" in printed.err and "render-scene/render-one" in printed.out


def test_a_full_disk_names_the_path_and_the_free_space(
    write_scene: Callable[..., Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    real_fsync = os.fsync

    def full_for_frame_2(fd: int) -> None:
        if os.readlink(f"/proc/self/fd/{fd}").split("/")[-1].startswith(".000002.png"):
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr("pytti_engine.atomic.os.fsync", full_for_frame_2)
    out = tmp_path / "run"
    assert (
        main(["render", str(write_scene(frames=2, size=16, steps=1)), "--out", str(out), "--device", "cpu"])
        == 2
    )
    err = capsys.readouterr().err
    assert (
        f"no space left on device writing {out / 'frames' / '000002.png'} (" in err and " free there)" in err
    )
    assert (out / "records" / "000001.json").is_file() and not list(out.rglob("*.tmp"))
    with pytest.raises(DiskFullError, match=r"writing .*x\.bin \(\d+(\.\d)? [KMGT]?i?B free there\)"):
        monkeypatch.setattr(
            "pytti_engine.atomic.os.fsync", lambda fd: (_ for _ in ()).throw(OSError(errno.EDQUOT, "quota"))
        )
        atomic_write_bytes(tmp_path / "x.bin", b"x")


def test_artifacts_that_cannot_be_written_never_fail_a_render(
    write_scene: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    warnings: list[str] = []

    class Recorder:
        def warning(self, message: str, *args: Any) -> None:
            warnings.append(message % args)

    def full(*args: Any, **kwargs: Any) -> None:
        raise DiskFullError("no space left on device writing contact-sheet.png (0 B free there)")

    monkeypatch.setattr(tasks.tolerant, "run_logger", Recorder)
    monkeypatch.setattr(tasks.publish, "atomic_write_bytes", full)  # the contact sheet (latest frame)
    monkeypatch.setattr(tasks.publish, "create_table_artifact", full)  # the summary tables
    monkeypatch.setattr("tasks.plan_chart.plan_chart_png", full)  # the plan chart
    summary = render_scene(
        RenderParams(
            scene_path=str(write_scene(frames=2, size=16, steps=1)), out_dir=str(tmp_path / "r"), device="cpu"
        )
    )
    assert summary.frames == 2 and Path(summary.video).is_file()
    assert any("latest-frame artifact" in w and "no space left" in w for w in warnings), warnings
    assert any("summary artifacts" in w for w in warnings) and any("plan chart" in w for w in warnings)


def test_the_worker_image_runs_unprivileged_and_renders_onto_its_volume() -> None:
    import json
    import re

    repo = Path(__file__).resolve().parents[2]
    dockerfile = (repo / "deploy" / "Dockerfile").read_text()
    users = re.findall(r"^USER\s+(\S+)", dockerfile, flags=re.M)
    assert users and users[-1] not in ("root", "0", "0:0"), "the worker must not run as root"
    env = dict(re.findall(r"(PYTTI_[A-Z_]+)=(\S+)", dockerfile))
    assert env[RENDERS_ROOT_ENV] == "/renders" and env[OUTPUT_ROOTS_ENV] == "/renders"
    assert '"/renders"' in dockerfile.split("VOLUME", 1)[1].splitlines()[0]
    template = json.loads((repo / "deploy" / "k8s" / "base-job-template.json").read_text())
    pod = template["job_configuration"]["job_manifest"]["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["fsGroup"] == 1000
    assert template["variables"]["properties"]["renders_mount_path"]["default"] == env[RENDERS_ROOT_ENV]
