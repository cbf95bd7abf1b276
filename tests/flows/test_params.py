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
    with pytest.raises(ValidationError, match="exactly one of scene_path"):
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


def test_the_form_schema_offers_two_scene_sources_typed_fields_and_a_device_list() -> None:
    from flows.params import DEVICE_CHOICES, STARTER_SCENE

    schema = RenderParams.model_json_schema()
    file_tab, text_tab = schema["oneOf"]
    assert (file_tab["title"], file_tab["required"]) == ("Scene file", ["scene_path"])
    assert (text_tab["title"], text_tab["required"]) == ("Scene text", ["scene_text"])
    assert text_tab["properties"]["scene_text"]["default"] == STARTER_SCENE  # a multi-line example box
    width = schema["properties"]["width"]
    assert (width["type"], width["minimum"], width["maximum"]) == ("integer", 16, 8192)  # no null branch
    assert "minimum" not in file_tab["properties"]["width"]  # limits are checked once, at the top
    assert schema["properties"]["device"]["enum"] == list(DEVICE_CHOICES)
    assert file_tab["properties"]["device"]["enum"] == list(DEVICE_CHOICES)  # a choice list in the form
    for prop in schema["properties"].values():
        assert "<" not in prop.get("description", ""), "the V1 UI drops <words> in descriptions"


def test_the_server_refuses_neither_or_both_sources_and_accepts_pasted_text() -> None:
    deployment_id = render_scene.to_deployment(name="params-sources-test").apply()
    url = f"{PREFECT_API_URL.value()}/deployments/{deployment_id}/create_flow_run"
    for params in ({}, {"scene_path": "a.yaml", "scene_text": "width: 32"}, {"scene_path": ""}):
        refused = httpx.post(url, json={"parameters": {"params": params}})
        assert refused.status_code == 409, (params, refused.text)
    text_only = httpx.post(url, json={"parameters": {"params": {"scene_text": "width: 32", "width": 64}}})
    assert text_only.status_code == 201, text_only.text
    httpx.delete(f"{PREFECT_API_URL.value()}/flow_runs/{text_only.json()['id']}")


def test_without_schema_enforcement_the_flow_refuses_bad_values_before_any_work(tmp_path: Path) -> None:
    """What a worker does with a run whose "Validate parameters" box was unchecked in the UI."""
    out = tmp_path / "never"
    state = render_scene(params={"scene_path": "a.yaml", "out_dir": str(out), "width": 5}, return_state=True)
    assert state.is_failed()
    assert "params.width: Input should be greater than or equal to 16" in str(state.message)
    both = render_scene(
        params={"scene_path": "a.yaml", "scene_text": "x", "out_dir": str(out)}, return_state=True
    )
    assert "give exactly one of scene_path (a scene file) and scene_text" in str(both.message)
    assert not out.exists()


def test_run_names_tell_renders_apart_and_keep_a_typed_name(tmp_path: Path) -> None:
    from flows.params import GENERATED_RUN_NAME, run_name_for

    scene = tmp_path / "alice" / "test.yaml"
    scene.parent.mkdir()
    scene.write_text("title: Storm over the bay\nwidth: 32\n")
    named = run_name_for({"scene_path": str(scene), "seed": 4, "width": 64, "out_dir": "renders/a"})
    assert named == "Storm over the bay · alice/test.yaml [seed=4 width=64] → renders/a"
    assert run_name_for({"scene_path": "/x/bob/test.yaml"}) == "bob/test.yaml"
    text = "title: Pasted\nwidth: 32\n"
    assert run_name_for(RenderParams(scene_text=text)) == f"Pasted · pasted text {inline_stem(text)}"
    for generated in ("Generic-Barbet", "Ergonomic-Hawk", "nonchalant-crane"):
        assert GENERATED_RUN_NAME.match(generated), generated
    for typed in ("storm test", "Storm-Test", "nightly re-run 2", "Alice"):
        assert not GENERATED_RUN_NAME.match(typed), typed


def test_the_form_run_name_is_kept_and_a_generated_one_replaced(
    write_scene: Callable[..., Path], tmp_path: Path
) -> None:
    scene = write_scene(frames=1, name="named.yaml")
    params = RenderParams(scene_path=str(scene), out_dir=str(tmp_path / "a"), device="cpu")
    typed = render_scene.with_options(flow_run_name="my storm test")(params, return_state=True)
    generated = render_scene(params.model_copy(update={"out_dir": str(tmp_path / "b")}), return_state=True)
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        names = [client.read_flow_run(s.state_details.flow_run_id).name for s in (typed, generated)]
    assert names == ["my storm test", f"{scene.parent.name}/named.yaml → {tmp_path / 'b'}"]
