"""``pytti render --sweep`` and ``pytti batch`` through the CLI (in process, temporary Prefect backend)."""

from collections.abc import Callable
from pathlib import Path

import pytest

from flows.cli import main


def test_sweep_renders_the_cartesian_product_each_in_its_own_run_dir(
    write_scene: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scene = write_scene(frames=1, name="storm.yaml")
    out = tmp_path / "renders"
    argv = ["render", str(scene), "--out", str(out), "--device", "cpu"]
    code = main([*argv, "--sweep", "seed=1,2", "--sweep", "steps_per_frame=1,2"])
    assert code == 0, capsys.readouterr().err
    dirs = sorted(p.name for p in (out / "storm").iterdir())
    assert dirs == [
        "seed=1,steps_per_frame=1",
        "seed=1,steps_per_frame=2",
        "seed=2,steps_per_frame=1",
        "seed=2,steps_per_frame=2",
    ]
    for name in dirs:
        assert (out / "storm" / name / "storm.mp4").is_file()
    frame = "frames/000001.png"
    by_seed = [(out / "storm" / f"seed={s},steps_per_frame=1" / frame).read_bytes() for s in (1, 2)]
    assert by_seed[0] != by_seed[1]  # the override reached the render
    assert capsys.readouterr().out.count("completed") == 4


def test_batch_cli_reports_every_invalid_scene_and_starts_nothing(
    write_scene: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = write_scene(name="good.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("width: 3\nscenes: []\n")
    code = main(["batch", str(good), str(bad), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2
    assert f"{bad}:1:8: width" in err and "1 of 2 scene(s) are invalid; nothing was started" in err
    assert not (tmp_path / "out").exists()
    assert main(["batch", str(tmp_path / "missing")]) == 2
    assert "no such scene file or folder" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["batch", str(empty)]) == 0  # an empty queue: a successful no-op that says so
    assert "nothing to render: no scene files" in capsys.readouterr().out
    assert main(["render", str(good), "--sweep", "seed"]) == 2
    assert "expected KEY=V1,V2" in capsys.readouterr().err
