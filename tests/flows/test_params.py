"""Typed flow parameters: inline scene text, typed overrides, and the server's schema check (HTTP 409)."""

import textwrap
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from prefect.settings import PREFECT_API_URL
from pydantic import ValidationError

from flows.params import RenderParams, inline_stem, resolve_scene
from flows.render_scene import render_scene
from pytti_engine.errors import SceneError
from pytti_engine.video import probe_video


def test_exactly_one_scene_source_is_required() -> None:
    with pytest.raises(ValidationError, match="exactly one of scene_path and scene_text"):
        RenderParams()
    with pytest.raises(ValidationError, match="exactly one"):
        RenderParams(scene_path="a.yaml", scene_text="width: 32")


def test_typed_overrides_follow_the_free_form_ones() -> None:
    params = RenderParams(scene_path="a.yaml", overrides=["fps=6"], seed=4, steps_per_frame=20, width=64)
    assert params.all_overrides() == ("fps=6", "seed=4", "width=64", "steps_per_frame=20")
    with pytest.raises(ValidationError, match="greater than or equal to 16"):
        RenderParams(scene_path="a.yaml", width=5)


def test_invalid_inline_text_reports_every_error_at_its_line(tmp_path: Path) -> None:
    text = "width: 32\nheight: -4\nfps: 12\nbogus_key: 1\nscenes:\n  - prompts: 'a'\n    frames: 2\n"
    with pytest.raises(SceneError) as err:
        resolve_scene(RenderParams(scene_text=text, out_dir=str(tmp_path / "run")))
    message = str(err.value)
    assert "<scene_text>:2:" in message and "<scene_text>:4:" in message
    assert not (tmp_path / "run").exists()  # nothing written before the text validated


def test_inline_scene_renders_and_typed_overrides_apply(
    write_scene: Callable[..., Path], tmp_path: Path
) -> None:
    text = write_scene(frames=2, size=32).read_text()
    out = tmp_path / "inline"
    summary = render_scene(RenderParams(scene_text=text, out_dir=str(out), device="cpu", width=48))
    video = Path(summary.video)
    assert video == out / f"{inline_stem(text)}.mp4"
    info = probe_video(video)
    assert (info.frames, info.width, info.height) == (2, 48, 32)


def test_bad_inline_text_fails_the_run_with_the_file_line_message(tmp_path: Path) -> None:
    text = textwrap.dedent(
        """\
        width: 32
        height: 32
        fps: twelve
        scenes:
          - prompts: "a"
            frames: 2
        """
    )
    state = render_scene(
        RenderParams(scene_text=text, out_dir=str(tmp_path / "r"), device="cpu"), return_state=True
    )
    assert state.is_failed()
    assert "<scene_text>:3:6" in state.message


def test_the_server_rejects_bad_parameters_with_409(tmp_path: Path) -> None:
    deployment_id = render_scene.to_deployment(name="params-409-test").apply()
    url = f"{PREFECT_API_URL.value()}/deployments/{deployment_id}/create_flow_run"
    bad = httpx.post(url, json={"parameters": {"params": {"scene_path": "a.yaml", "width": 5}}})
    assert bad.status_code == 409, bad.text
    assert "params.width" in bad.text and "minimum of 16" in bad.text
    wrong_device = httpx.post(url, json={"parameters": {"params": {"scene_path": "a.yaml", "device": "tpu"}}})
    assert wrong_device.status_code == 409, wrong_device.text
    good = httpx.post(url, json={"parameters": {"params": {"scene_path": "a.yaml", "seed": 3}}})
    assert good.status_code == 201, good.text
    httpx.delete(f"{PREFECT_API_URL.value()}/flow_runs/{good.json()['id']}")
