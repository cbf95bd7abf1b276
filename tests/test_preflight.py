"""One preflight for every entry point (issue 15.2): what cannot render is refused by ``pytti validate``,
by ``pytti render`` before Prefect starts (one line, exit 2), by batch pre-validation and by the UI's
run parameters; and ``validate`` agrees with the preflight on every example scene."""

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from flows.cli import main
from pytti_engine.errors import PyttiError
from pytti_engine.preflight import (
    PreflightError,
    cutout_bytes,
    preflight,
    url_problem,
)
from pytti_engine.scene import build_plan, load_scene

SCENES_DIR = Path(__file__).resolve().parent.parent / "scenes"
EXAMPLE_SCENES = sorted([*SCENES_DIR.glob("*.yaml"), *SCENES_DIR.glob("queue/*.yaml")])

CANNOT_RENDER = {
    "unknown_model": (
        "perceptors=[{model: ViT-B-33, pretrained: openai}]",
        "unknown open_clip model 'ViT-B-33'",
    ),
    "misspelt_tag": ("perceptors=[{model: ViT-B-32, pretrained: opnai}]", "did you mean: openai?"),
    "missing_tag_weights": (
        "perceptors=[{model: ViT-B-32, pretrained: openai}]",
        "weights for perceptor ViT-B-32 (pretrained: openai) are not available",
    ),
    "missing_weights_file": (
        "perceptors=[{model: ViT-B-32, pretrained: /nowhere/vit-b-32.safetensors}]",
        "pretrained weights file not found: /nowhere/vit-b-32.safetensors",
    ),
    "cutouts_beyond_memory": ("cutouts=2147483648", "cutouts: 2147483648 cutouts of 224x224 px"),
    "cutouts_10e400": (f"cutouts={10**400}", "cutouts: about 1.00e+400 cutouts"),
    "fps_the_encoder_cannot_write": ("fps=1e-300", "fps: 1e-300 frames per second is below"),
    "malformed_url_mask": (
        "scenes.0.prompts=a cat:1_[https://exa mple.com/m.png]",
        "image mask: malformed URL 'https://exa mple.com/m.png'",
    ),
}


@pytest.fixture
def empty_hf_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """An empty Hugging Face cache, offline: no tag's weights are available."""
    from huggingface_hub import constants

    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return cache


def _cache_weights(cache: Path, repo: str, filename: str = "open_clip_model.safetensors") -> None:
    """Put a (dummy) weights file for ``repo`` into a Hugging Face cache, as a download would."""
    folder = cache / f"models--{repo.replace('/', '--')}"
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text("0" * 40)
    snapshot = folder / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (snapshot / filename).write_bytes(b"not really weights")


@pytest.fixture
def no_render(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if a render flow (Prefect) is started."""
    import flows.render_scene

    def started(*args: object, **kwargs: object) -> None:
        raise AssertionError("the render flow started: Prefect was reached")

    monkeypatch.setattr(flows.render_scene, "render_scene", started)


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.usefixtures("empty_hf_cache", "no_render")
@pytest.mark.parametrize("case", sorted(CANNOT_RENDER))
def test_what_cannot_render_fails_validate_and_render_before_prefect(
    case: str, capsys: pytest.CaptureFixture[str], write_scene: Callable[..., Path], tmp_path: Path
) -> None:
    override, message = CANNOT_RENDER[case]
    scene = write_scene()
    code, out, err = _run(capsys, "validate", str(scene), "--set", override)
    assert code == 2 and message in err and "ok:" not in out, err
    run_dir = tmp_path / "run"
    code, _, err = _run(capsys, "render", str(scene), "--out", str(run_dir), "--set", override)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and message in err and "Traceback" not in err, err
    assert len(lines) == 1 and lines[0].startswith("pytti: error: "), err
    assert not run_dir.exists()


@pytest.mark.usefixtures("no_render")
@pytest.mark.parametrize(
    ("device", "missing", "message"),
    [("mps", "mps", "MPS is not available"), ("cuda", "cuda", "CUDA is not available")],
)
def test_a_device_this_machine_lacks_fails_render_before_prefect(
    device: str,
    missing: str,
    message: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    write_scene: Callable[..., Path],
    tmp_path: Path,
) -> None:
    import torch

    target = torch.backends.mps if missing == "mps" else torch.cuda
    monkeypatch.setattr(target, "is_available", lambda: False)
    code, _, err = _run(
        capsys, "render", str(write_scene()), "--out", str(tmp_path / "r"), "--device", device
    )
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err


def test_validate_prints_what_each_perceptor_loads(
    capsys: pytest.CaptureFixture[str], write_scene: Callable[..., Path], stand_in_dir: Path
) -> None:
    code, out, _ = _run(capsys, "validate", str(write_scene()))
    assert code == 0, out
    assert f"perceptors.0: local-dir:{stand_in_dir}, 224 px, GELU (the folder's open_clip_config.json)" in out


@pytest.mark.parametrize("scene", EXAMPLE_SCENES, ids=lambda p: p.name)
def test_validate_and_preflight_agree_on_every_example_scene(
    scene: Path, empty_hf_cache: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without the tags' weights both refuse, with the same line; with them both pass (rendering a
    scene that passes is covered by tests/test_scenes.py and the render tests)."""
    loaded = load_scene(scene)
    plan = build_plan(loaded)
    outcomes = []
    for attempt in ("without weights", "with weights"):
        if attempt == "with weights":
            import open_clip

            for spec in loaded.perceptors:
                cfg = open_clip.get_pretrained_cfg(spec.model, spec.pretrained or "")
                if cfg:
                    _cache_weights(empty_hf_cache, os.path.split(cfg["hf_hub"])[0])  # as open_clip does
        try:
            preflight(loaded, plan, name=str(scene))
            problems: list[str] = []
        except PreflightError as e:
            problems = e.problems
        code, out, err = _run(capsys, "validate", str(scene))
        assert (code == 0) == (not problems), (attempt, out, err)
        assert all(p in err for p in problems), (attempt, err)
        outcomes.append(code)
    assert outcomes[-1] == 0, problems


def test_batch_prevalidation_uses_the_preflight(write_scene: Callable[..., Path], tmp_path: Path) -> None:
    from tasks.batch import BatchJob, check_job

    scene = write_scene()
    job = BatchJob(name="s", scene_path=str(scene), out_dir=str(tmp_path / "out"), overrides=("fps=1e-300",))
    assert "fps: 1e-300 frames per second is below" in (check_job(job).error or "")
    assert check_job(job.model_copy(update={"overrides": ()})).error is None


def test_the_ui_run_parameters_use_the_preflight(stand_in_dir: Path, tmp_path: Path) -> None:
    from flows.params import RenderParams, resolve_scene
    from tests.scene_files import small_scene_text

    text = small_scene_text(stand_in_dir, prompts="a red circle").replace(
        "cutouts: 2\n", "cutouts: 2147483648\n"
    )
    with pytest.raises(PreflightError, match=r"<scene_text>: cutouts: 2147483648 cutouts"):
        resolve_scene(RenderParams(scene_text=text, out_dir=str(tmp_path / "run")))
    good = small_scene_text(stand_in_dir, prompts="a red circle")
    source = resolve_scene(RenderParams(scene_text=good, out_dir=str(tmp_path / "run")))
    assert source.report is not None and source.report.perceptors[0].input_size == 224


def test_cutouts_are_measured_against_the_memory_given(write_scene: Callable[..., Path]) -> None:
    scene = load_scene(write_scene(), ["cutouts=64"])
    plan = build_plan(scene)
    need = cutout_bytes(64, 224)
    assert need == 64 * 3 * 224 * 224 * 4
    preflight(scene, plan, memory_bytes=need)
    with pytest.raises(PreflightError, match="cutouts: 64 cutouts of 224x224 px"):
        preflight(scene, plan, memory_bytes=need - 1)
    halves = load_scene(write_scene(), ["cutouts=64", "gradient_accumulation_steps=2"])
    preflight(halves, build_plan(halves), memory_bytes=need // 2)  # one micro-batch at a time


def test_url_syntax() -> None:
    assert url_problem("https://example.com/a.png") is None
    assert url_problem("http://127.0.0.1:8000/m.mp4") is None
    assert "needs a host" in (url_problem("https:///a.png") or "")
    assert "malformed URL" in (url_problem("http://host:port/a.png") or "")
    assert "not an http(s) URL" in (url_problem("ftp://host/a.png") or "")
    assert issubclass(PreflightError, PyttiError)
