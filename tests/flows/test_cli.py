"""The ``pytti`` command: help, exit codes, and one-line errors for bad input."""

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from flows.cli import main


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_help_lists_the_commands() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "flows.cli", "--help"], capture_output=True, text=True, check=True
    )
    for command in ("render", "demo", "models"):
        assert command in proc.stdout


def _assert_one_line_error(code: int, err: str, *needles: str) -> None:
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines and "Traceback" not in err, err
    assert lines[0].startswith("pytti: error: ")
    for needle in needles:
        assert needle in err, err


def test_missing_scene_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = _run(capsys, "render", str(tmp_path / "nope.yaml"), "--out", str(tmp_path / "o"))
    _assert_one_line_error(code, err, "nope.yaml")


BAD_SCENES = {
    "yaml_syntax": ("width: [1, 2\n", "bad.yaml:"),
    "unknown_key": ("colour: red\n", "colour"),
    "negative_size": ("width: -5\n", "width"),
    "missing_init": ("init_image: missing.png\n", "missing.png"),
}


@pytest.mark.parametrize("case", sorted(BAD_SCENES))
def test_bad_scene_exits_2_and_touches_nothing(
    case: str, capsys: pytest.CaptureFixture[str], write_scene: Callable[..., Path], tmp_path: Path
) -> None:
    body, needle = BAD_SCENES[case]
    scene = write_scene(body, name="bad.yaml")
    out = tmp_path / "existing-run"
    (out / "frames").mkdir(parents=True)
    (out / "frames" / "000001.png").write_bytes(b"precious")
    code, _, err = _run(capsys, "render", str(scene), "--out", str(out))
    _assert_one_line_error(code, err, needle)
    assert (out / "frames" / "000001.png").read_bytes() == b"precious"
    assert sorted(p.name for p in out.rglob("*")) == ["000001.png", "frames"]


def test_unwritable_output_directory(
    capsys: pytest.CaptureFixture[str], write_scene: Callable[..., Path], tmp_path: Path
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    code, _, err = _run(capsys, "render", str(write_scene()), "--out", str(blocker / "run"))
    _assert_one_line_error(code, err, "not writable")


def test_bad_device(
    capsys: pytest.CaptureFixture[str], write_scene: Callable[..., Path], tmp_path: Path
) -> None:
    code, _, err = _run(
        capsys, "render", str(write_scene()), "--out", str(tmp_path / "o"), "--device", "gpu7"
    )
    _assert_one_line_error(code, err, "--device")


def test_render_command_renders(
    capsys: pytest.CaptureFixture[str], write_scene: Callable[..., Path], tmp_path: Path
) -> None:
    out = tmp_path / "run"
    code, stdout, _ = _run(capsys, "render", str(write_scene(frames=2)), "--out", str(out), "--device", "cpu")
    assert code == 0
    assert "done:" in stdout and (out / "scene.mp4").is_file()


def test_models_stand_in_writes_a_loadable_model(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from pytti_engine.perceptors import load_perceptor

    code, stdout, _ = _run(capsys, "models", "stand-in", str(tmp_path / "m"))
    assert code == 0 and "local-dir:" in stdout
    size = sum(f.stat().st_size for f in (tmp_path / "m").iterdir())
    assert size < 10_000_000
    perceptor = load_perceptor(f"local-dir:{tmp_path / 'm'}")
    assert perceptor.encode_text(["hello"]).shape[0] == 1


def test_models_list_reports_local_availability(capsys: pytest.CaptureFixture[str]) -> None:
    code, stdout, _ = _run(capsys, "models", "list")
    assert code == 0
    assert "ViT-B-32:openai" in stdout and "pairs have weights in the local cache" in stdout


def test_models_fetch_offline_fails_fast_with_instructions(capsys: pytest.CaptureFixture[str]) -> None:
    import time

    start = time.perf_counter()
    code, _, err = _run(capsys, "models", "fetch", "ViT-B-32:openai")
    assert time.perf_counter() - start < 5
    _assert_one_line_error(code, err, "ViT-B-32", "local-dir:")
    code, _, err = _run(capsys, "models", "fetch", "ViT-B-32")
    _assert_one_line_error(code, err, "MODEL:TAG")


def test_unsupported_prompt_feature_is_refused_before_rendering(
    capsys: pytest.CaptureFixture[str], write_scene: Callable[..., Path], tmp_path: Path
) -> None:
    (tmp_path / "clip.mp4").write_bytes(b"")  # video masks are refused (by the engine, before rendering)
    body = 'scenes:\n  - prompts: "a cat:1_[clip.mp4]"\n    frames: 2\n'
    code, _, err = _run(capsys, "render", str(write_scene(body)), "--out", str(tmp_path / "o"))
    _assert_one_line_error(code, err, "mask")


def test_models_toy_trains_a_loadable_model_that_knows_colours(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import functools

    import pytti_engine.toy as toy
    from pytti_engine.perceptors import load_perceptor

    # a two-step training keeps this fast; the full training is what the session's toy_dir fixture runs
    quick = functools.partial(
        toy.ToyTraining, chunk_steps=2, max_steps=2, target_accuracy=0.0, eval_pictures=8
    )
    monkeypatch.setattr(toy, "ToyTraining", quick)
    code, stdout, err = _run(capsys, "models", "toy", str(tmp_path / "toy"), "--seed", "1")
    assert code == 0 and "training the toy perceptor" in err
    assert "local-dir:" in stdout and "a red square" in stdout and "2 steps" in stdout
    report = toy.read_toy_report(tmp_path / "toy")
    assert report is not None and report.steps == 2
    assert load_perceptor(f"local-dir:{tmp_path / 'toy'}").encode_text(["a red square"]).shape == (1, 32)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, _, err = _run(capsys, "models", "toy", str(blocker / "toy"))
    _assert_one_line_error(code, err, "cannot write the toy perceptor")


def test_the_offline_demo_swaps_in_the_toy_perceptor_and_prompts_it_knows(
    capsys: pytest.CaptureFixture[str], toy_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import flows.cli as cli
    import tasks.resident
    from pytti_engine.errors import ModelLoadError
    from pytti_engine.scene import load_scene

    def missing(*args: object) -> None:
        raise ModelLoadError("weights for perceptor ViT-B-32 (pretrained: openai) are not available")

    monkeypatch.setattr(tasks.resident, "perceptor", missing)  # as on a machine without the weights
    monkeypatch.setattr(cli, "_cache_root", lambda: toy_dir.parent)  # the toy trained for this session
    overrides, why = cli._demo_overrides(cli._demo_scene())
    assert why is not None and "not available" in why
    scene = load_scene(cli._demo_scene(), overrides)
    assert [p.model for p in scene.perceptors] == [f"local-dir:{toy_dir}"]
    assert [s.prompts[0].text for s in scene.scenes] == ["a red circle", "a yellow square"]

    def fake_render(scene: Path, out: Path, device: str, overrides: list[str], **options: object) -> int:
        assert any("local-dir:" in o for o in overrides)
        return 0

    monkeypatch.setattr(cli, "_run_render", fake_render)
    code, _, err = _run(capsys, "demo", "--out", "unused")
    assert code == 0 and err.count("TOY perceptor") == 2 and "turns red, then yellow" in err


@pytest.mark.slow
def test_pytti_demo_offline_renders_a_video_that_turns_red_then_yellow(
    capsys: pytest.CaptureFixture[str], toy_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``pytti demo`` end to end without CLIP weights: the toy perceptor, the demo's 24 frames at 128²."""
    import flows.cli as cli
    import tasks.resident
    from pytti_engine.errors import ModelLoadError
    from pytti_engine.io import load_image

    real = tasks.resident.perceptor

    def without_clip(
        model: str, pretrained: str | None, device: str, quick_gelu: bool | None = None
    ) -> object:
        if not model.startswith("local-dir:"):
            raise ModelLoadError(f"weights for perceptor {model} are not available")
        return real(model, pretrained, device, quick_gelu)

    monkeypatch.setattr(tasks.resident, "perceptor", without_clip)
    monkeypatch.setattr(cli, "_cache_root", lambda: toy_dir.parent)
    code, stdout, err = _run(capsys, "demo", "--out", str(tmp_path / "demo"), "--device", "cpu")
    assert code == 0 and "done:" in stdout and "TOY perceptor" in err
    assert (tmp_path / "demo" / "demo.mp4").is_file()
    red = load_image(tmp_path / "demo" / "frames" / "000012.png", (128, 128)).mean(dim=(0, 2, 3))
    yellow = load_image(tmp_path / "demo" / "frames" / "000024.png", (128, 128)).mean(dim=(0, 2, 3))
    assert red[0] > red[1] + 0.2 and red[0] > red[2] + 0.2, red  # scene 1: red
    assert min(yellow[0], yellow[1]) > yellow[2] + 0.2, yellow  # scene 2: red and green light: yellow
