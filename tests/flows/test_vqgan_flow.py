"""image_model: vqgan through the CLI and the flow: up-front file checks, stand-in, fetch, MP4, import, kill -9."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from flows.cli import main
from flows.render_scene import RenderParams, render_scene
from pytti_engine.video import probe_video
from pytti_engine.vqgan_files import ENV_MODELS_DIR, HUB_REPO


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def empty_model_places(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.delenv(ENV_MODELS_DIR, raising=False)
    return tmp_path


def test_missing_vqgan_files_fail_render_and_validate_in_one_line_before_prefect(
    write_scene: Callable[..., Path], empty_model_places: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scene = write_scene("image_model: vqgan\nvqgan_model: wikiart\n")
    out = empty_model_places / "run"
    code, _, err = _run(capsys, "render", str(scene), "--out", str(out), "--device", "cpu")
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    for needle in ("wikiart.yaml and wikiart.ckpt", str(empty_model_places / "cache" / "vqgan"), HUB_REPO):
        assert needle in err
    assert not out.exists()  # nothing was started or written
    code, _, err = _run(capsys, "validate", str(scene))
    assert code == 2 and "wikiart.yaml and wikiart.ckpt" in err and len(err.strip().splitlines()) == 1


def test_validate_names_the_weights_and_the_rounding(
    write_scene: Callable[..., Path], vqgan_models_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scene = write_scene(f"image_model: vqgan\nmodels_dir: {vqgan_models_dir}\n", size=40)
    code, out, err = _run(capsys, "validate", str(scene))
    assert code == 0, err
    assert "32x32" in out and f"vqgan imagenet ({vqgan_models_dir / 'vqgan' / 'imagenet.ckpt'})" in out
    assert "note: width 40 rounded down to 32" in err and "note: height 40 rounded down to 32" in err


def test_stand_in_command_writes_the_taming_layout(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("diffusers")
    code, out, _ = _run(capsys, "models", "stand-in", "--vqgan", str(tmp_path / "m"), "--name", "openimages")
    assert code == 0 and "gumbel" in out and "vqgan_model: openimages" in out
    import torch

    payload = torch.load(tmp_path / "m" / "vqgan" / "openimages.ckpt", weights_only=True)
    assert "quantize.embed.weight" in payload["state_dict"] and payload["pytti_stand_in"] is True
    assert "GumbelVQ" in (tmp_path / "m" / "vqgan" / "openimages.yaml").read_text()


def test_fetch_vqgan_offline_is_a_one_line_error(
    empty_model_places: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = _run(capsys, "models", "fetch", "vqgan:imagenet")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert f"cannot download {HUB_REPO}/imagenet/imagenet.yaml" in err
    code, _, err = _run(capsys, "models", "fetch", "vqgan:faceshq")
    assert code == 2 and "unknown VQGAN 'faceshq'" in err


def test_models_list_shows_which_vqgans_are_local(
    vqgan_models_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    empty_model_places: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv(ENV_MODELS_DIR, str(vqgan_models_dir))
    code, out, _ = _run(capsys, "models", "list", "--local")
    assert code == 0
    assert f"local  vqgan:imagenet  ({vqgan_models_dir / 'vqgan' / 'imagenet.ckpt'})" in out
    assert "vqgan:wikiart" not in out


def test_vqgan_scene_renders_an_mp4_through_the_flow(
    write_scene: Callable[..., Path], vqgan_models_dir: Path, tmp_path: Path
) -> None:
    body = f"image_model: vqgan\nmodels_dir: {vqgan_models_dir}\nanimation: 2d\ntranslate_x: 4\n"
    scene = write_scene(body, frames=2)
    out = tmp_path / "run"
    summary = render_scene(RenderParams(scene_path=str(scene), out_dir=str(out), device="cpu"))
    assert (summary.frames, summary.rendered) == (2, 2)
    info = probe_video(Path(summary.video))
    assert (info.frames, info.width, info.height) == (2, 32, 32)
    manifest = json.loads((out / "manifest.json").read_text())
    vqgan = manifest["models"]["vqgan"]
    assert vqgan["vqgan_model"] == "imagenet" and vqgan["stand_in"] is True
    assert len(vqgan["checkpoint_sha256"]) == 64 and vqgan["checkpoint"].endswith("imagenet.ckpt")
    assert manifest["versions"]["diffusers"] != "-"


NOTEBOOK_CONFIG = """\
scenes: a lighthouse on a cliff:2 | stormy sea || a lighthouse at dawn
image_model: VQGAN
vqgan_model: imagenet
width: 180
height: 112
pixel_size: 4
steps_per_scene: 100
steps_per_frame: 50
learning_rate: null
models_parent_dir: '.'
animation_mode: 2D
translate_x: '2'
zoom_x_2d: '3'
zoom_y_2d: '3'
reset_lr_each_frame: false
seed: 7
"""


@pytest.mark.slow  # the imagenet-shaped stand-in at 32² through validate and 4 frames: ~30 s
def test_imported_vqgan_notebook_config_validates_and_renders(
    stand_in_dir: Path, vqgan_models_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "pytti.yaml"
    config.write_text(NOTEBOOK_CONFIG)
    scene = tmp_path / "scene.yaml"
    code, _, err = _run(capsys, "import-pytti", str(config), "-o", str(scene))
    assert code == 0, err
    imported = scene.read_text()
    for line in (
        "image_model: vqgan",
        "vqgan_model: imagenet",
        "width: 720",
        "height: 448",
        "learning_rate: 0.1",
    ):
        assert line in imported
    assert "pixel_size" not in imported.split("# Not carried over")[-1].split("\n", 1)[-1].replace("#", "")
    assert "models_dir: ." in imported
    small = [
        f"perceptors=[{{model: 'local-dir:{stand_in_dir}'}}]",
        f"models_dir={vqgan_models_dir}",
        "width=32",
        "height=32",
        "steps_per_frame=2",
        "cutouts=2",
        "zoom_x=1.05",
        "zoom_y=1.05",
    ]
    code, out, err = _run(capsys, "validate", str(scene), *(f"--set={s}" for s in small))
    assert code == 0 and "vqgan imagenet" in out, err
    import torch

    from pytti_engine.job import build_context
    from pytti_engine.render import render_frames
    from pytti_engine.scene import build_plan, load_scene

    loaded = load_scene(scene, small)
    plan = build_plan(loaded)
    images: list = []
    render_frames(plan.frames, build_context(loaded, plan, torch.device("cpu")), on_frame=images.append)
    assert len(images) == 4 and images[-1].image.shape == (1, 3, 32, 32)
    assert images[-1].state.image.kind == "vqgan" and images[-1].state.optimizer.param_groups[0]["lr"] == 0.1


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_kill_minus_9_then_resume_a_vqgan_render_is_byte_identical(
    write_scene: Callable[..., Path], vqgan_models_dir: Path, tmp_path: Path
) -> None:
    body = textwrap.dedent(
        f"""\
        image_model: vqgan
        models_dir: {vqgan_models_dir}
        animation: 2d
        translate_x: 3
        zoom: 1.05
        """
    )
    scene = write_scene(body, frames=6, steps=3)
    reference = tmp_path / "reference"
    render_scene(RenderParams(scene_path=str(scene), out_dir=str(reference), device="cpu"))

    def pytti(*args: str) -> subprocess.Popen[bytes]:
        env = {**os.environ, "PREFECT_HOME": str(tmp_path / "home"), "HF_HUB_OFFLINE": "1"}
        env.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")  # a busy 2-core machine
        env.pop("PREFECT_API_URL", None)
        return subprocess.Popen(
            [sys.executable, "-m", "flows.cli", *args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    run = tmp_path / "run"
    proc = pytti("render", str(scene), "--out", str(run), "--device", "cpu")
    deadline = time.monotonic() + 600
    while not (run / "records" / "000002.json").exists():
        assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
        assert time.monotonic() < deadline, "render did not reach frame 2"
        time.sleep(0.02)
    time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    done_at_kill = len(list((run / "records").glob("*.json")))
    assert 2 <= done_at_kill < 6
    resume = pytti("resume", str(run))
    out, _ = resume.communicate(timeout=600)
    assert resume.returncode == 0, out.decode()
    ref = {p.name: p.read_bytes() for p in (reference / "frames").glob("*.png")}
    assert {p.name: p.read_bytes() for p in (run / "frames").glob("*.png")} == ref
