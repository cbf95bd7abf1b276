"""The scene commands of the CLI, called through their argparse ``func`` (no flows/cli.py needed)."""

from __future__ import annotations

import argparse
import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from flows import cli_scene
from pytti_engine.scene import load_scene
from pytti_engine.scene.json_schema import scene_json_schema

GOOD = """\
fps: 4
animation: 2d
translate_x: "2 * t"
scenes:
  - {prompts: "a lighthouse:2 | fog:-1:-.9", frames: 3}
  - {prompts: "dawn:1 + scene_t", frames: 2, transition_frames: 1}
"""


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser(prog="pytti")
    cli_scene.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    code = args.func(args)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def good(tmp_path: Path, stand_in_dir: Path) -> Path:
    """GOOD with the stand-in perceptor (validate checks that a scene's weights are here)."""
    path = tmp_path / "good.yaml"
    path.write_text(GOOD + f"perceptors: [{{model: 'local-dir:{stand_in_dir}'}}]\n", encoding="utf-8")
    return path


def test_validate_ok(good: Path, stand_in_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["validate", str(good)], capsys)
    assert (code, err) == (0, "")
    assert out == (
        "ok: 5 frames, 2 scenes, 1.25 s at 4 fps, 256x256, animation 2d, 1 perceptor, 50 steps/frame\n"
        f"  perceptors.0: local-dir:{stand_in_dir}, 224 px, GELU (the folder's open_clip_config.json)\n"
    )


def test_validate_reports_all_errors_with_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("widht: 5\nfps: -1\nscenes:\n  - {prompts: 'a:sinn(t)', frames: 2}\n", encoding="utf-8")
    code, out, err = run(["validate", str(path)], capsys)
    assert code == 2 and out == ""
    assert err.splitlines() == [
        f"{path}:1:1: unknown key 'widht' (did you mean 'width'?)",
        f"{path}:2:6: fps: Input should be greater than 0 (got -1)",
        f"{path}:4:18: scenes.0.prompts: weight: unknown function 'sinn' (did you mean 'sin'?)",
        "3 errors",
    ]
    assert "Traceback" not in err


def test_validate_catches_errors_that_only_show_on_some_frame(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "late.yaml"
    path.write_text("scenes: [{prompts: 'a:sqrt(5 - frame)', frames: 8}]\n", encoding="utf-8")
    code, _, err = run(["validate", str(path)], capsys)
    assert code == 2
    assert (
        err.strip()
        == f"{path}:1:23: prompt weight: math error (math domain error) at frame 7 (t=0.5s) in 'sqrt(5 - frame)'"
    )


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["validate", "{missing}"], "{missing}: scene file not found"),
        (
            ["validate", "{good}", "--set", "steps_per_frame=-2"],
            "<--set>:1:17: steps_per_frame: Input should be",
        ),
        (["plan", "{missing}"], "{missing}: scene file not found"),
    ],
)
def test_bad_input_is_one_line_on_stderr(
    argv: list[str], expected: str, good: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    names = {"missing": str(tmp_path / "missing.yaml"), "good": str(good)}
    code, out, err = run([a.format(**names) for a in argv], capsys)
    assert code == 2 and out == ""
    assert err.startswith(expected.format(**names)) and err.count("\n") == 1


def test_validate_applies_overrides(good: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["validate", str(good), "--set", "scenes.0.frames=10", "--set", "fps=10"], capsys)
    assert code == 0 and out.startswith("ok: 12 frames, 2 scenes, 1.2 s at 10 fps")


def test_plan_prints_a_compact_table_and_writes_csv(
    good: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_csv = tmp_path / "plan.csv"
    code, out, err = run(["plan", str(good), "--csv", str(out_csv)], capsys)
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines == [
        "constant: translate_y=0, rotate_2d=0, zoom=1",
        "w1: a lighthouse",
        "w2: fog",
        "w3: dawn",
        "frame     t  scene  translate_x  w1    w2  stop2    w3",
        "    1     0      0            0   2    -1   -0.9     -",
        "    2  0.25      0          0.5   2    -1   -0.9     -",
        "    3   0.5      0            1   2    -1   -0.9     -",
        "    4  0.75      1          1.5   1  -0.5   -0.9   0.5",
        "    5     1      1            2   -     -      -  1.25",
    ]
    rows = list(csv.DictReader(io.StringIO(out_csv.read_text(encoding="utf-8"))))
    assert len(rows) == 5
    assert rows[3]["weight[a lighthouse]"] == "1.0" and rows[3]["weight[dawn]"] == "0.5"
    assert rows[4]["weight[a lighthouse]"] == "" and rows[4]["stop[fog]"] == ""
    assert float(rows[2]["translate_x"]) == 1.0


def test_plan_samples_long_plans(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "long.yaml"
    path.write_text("scenes: [{prompts: 'a:t', frames: 500}, {prompts: b, frames: 500}]\n", encoding="utf-8")
    code, out, _ = run(["plan", str(path), "--rows", "20"], capsys)
    frames = [int(line.split()[0]) for line in out.splitlines() if line.split()[0].isdigit()]
    assert code == 0 and 10 <= len(frames) <= 25
    assert {1, 501, 1000} <= set(frames)
    assert "..." in out


def test_plot_without_matplotlib_is_a_clear_error(
    good: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if it were not installed
    code, out, err = run(["plan", str(good), "--plot", str(tmp_path / "p.png")], capsys)
    assert code == 2 and out == ""
    assert err == "--plot needs matplotlib, which is not installed: pip install 'pytti-flow[charts]'\n"
    assert not (tmp_path / "p.png").exists()


def test_import_pytti_writes_a_valid_scene(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "old.yaml"
    config.write_text(
        "scenes: a:1 || b:2\nsteps_per_scene: 100\nsteps_per_frame: 25\nvqgan_model: coco\n",
        encoding="utf-8",
    )
    out = tmp_path / "new.yaml"
    code, stdout, err = run(["import-pytti", str(config), "-o", str(out)], capsys)
    assert code == 0
    assert stdout.startswith(f"wrote {out} (8 frames, 2 scenes")
    assert "vqgan_model" not in err  # pytti ignores it for an RGB image, and so do we
    assert load_scene(out).total_frames == 8
    code, _, err = run(["import-pytti", str(config), "-o", str(out)], capsys)
    assert code == 2 and "already exists (use --force" in err
    code, _, _ = run(["import-pytti", str(config), "-o", str(out), "--force"], capsys)
    assert code == 0


def test_import_pytti_reports_a_result_that_does_not_validate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "old.yaml"
    config.write_text("scenes: 'a:fLo*2'\n", encoding="utf-8")
    out = tmp_path / "new.yaml"
    code, _, err = run(["import-pytti", str(config), "-o", str(out)], capsys)
    assert code == 2 and out.exists()
    assert "unknown name 'fLo'" in err and "does not validate yet" in err


def test_import_pytti_missing_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["import-pytti", str(tmp_path / "x.yaml"), "-o", str(tmp_path / "y.yaml")], capsys)
    assert code == 2 and err == f"{tmp_path / 'x.yaml'}: pytti config not found\n"


def test_schema_prints_the_json_schema(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["schema"], capsys)
    assert code == 0 and json.loads(out) == scene_json_schema()


def test_the_scene_cli_imports_no_prefect_torch_or_matplotlib() -> None:
    check = "import sys, flows.cli_scene; print(sorted(m for m in ('torch', 'prefect', 'matplotlib') if m in sys.modules))"
    result = subprocess.run(
        [sys.executable, "-c", check], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "[]"


def test_plot_draws_a_chart_of_the_varying_values(
    good: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--plot writes the same chart as the render's plan artifact: one line per varying value."""
    from PIL import Image

    from pytti_engine.scene import build_plan, load_scene
    from tasks.plan_chart import varying_series

    out = tmp_path / "curves.png"
    code, _, err = run(["plan", str(good), "--plot", str(out)], capsys)
    assert (code, err) == (0, "")
    with Image.open(out) as chart:
        assert chart.format == "PNG" and chart.width >= 800 and chart.height >= 300
    series, scene_starts = varying_series(build_plan(load_scene(good)))
    names = {s.name for s in series}
    assert {"translate_x", "weight[a lighthouse]", "weight[dawn]"} <= names
    assert "zoom" not in names and "translate_y" not in names  # constant values get no line
    assert scene_starts == [4], "the second scene starts at frame 4"


def test_the_plan_chart_artifact_without_matplotlib_says_how_to_get_it(
    good: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """matplotlib is the optional ``charts`` extra: without it the artifact body says so, nothing raises."""
    from pytti_engine.scene import build_plan, load_scene
    from tasks.plan_chart import CHARTS_MISSING, plan_chart_markdown

    plan = build_plan(load_scene(good))
    assert plan_chart_markdown(plan).startswith("![plan chart](data:image/png;base64,")
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if it were not installed
    assert plan_chart_markdown(plan) == CHARTS_MISSING
    assert "pytti-flow[charts]" in CHARTS_MISSING
