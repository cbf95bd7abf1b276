"""Converting pytti-core configs into scene files."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import yaml

from pytti_engine.errors import SceneError
from pytti_engine.scene import build_plan, load_scene_text
from pytti_engine.scene.pytti_import import convert_pytti_text, import_pytti_config

DATA = Path(__file__).parent / "data"  # copies of pytti-core's assets/default.yaml and assets/demo.yaml


def convert(text: str) -> tuple[dict, list[str]]:  # type: ignore[type-arg]
    yaml_text, warnings = convert_pytti_text(textwrap.dedent(text))
    load_scene_text(yaml_text)  # every conversion must validate
    return yaml.safe_load(yaml_text), warnings


def test_steps_become_frames_and_scenes_split_on_double_pipe() -> None:
    scene, warnings = convert(
        """
        scenes: "a lighthouse:2 | fog:-1:-.9 || dawn:3 ||  "
        steps_per_scene: 200
        steps_per_frame: 50
        interpolation_steps: 100
        frames_per_second: 24
        seed: 7
        """
    )
    assert scene["fps"] == 24 and scene["seed"] == 7 and scene["steps_per_frame"] == 50
    assert scene["scenes"] == [
        {"prompts": "a lighthouse:2 | fog:-1:-.9", "frames": 4},
        {"prompts": "dawn:3", "frames": 4, "transition_frames": 2},
    ]
    assert not any("steps_per_scene" in w or "interpolation" in w for w in warnings)


def test_inexact_step_counts_are_rounded_with_a_warning() -> None:
    scene, warnings = convert(
        "scenes: a || b\nsteps_per_scene: 125\nsteps_per_frame: 50\ninterpolation_steps: 60\n"
    )
    assert [s["frames"] for s in scene["scenes"]] == [3, 3]
    assert scene["scenes"][1]["transition_frames"] == 1
    assert any(w.startswith("steps_per_scene: 125 steps is 2.5 frames") for w in warnings)
    assert any(w.startswith("interpolation_steps: 60 steps became transition_frames: 1") for w in warnings)


def test_clip_flags_become_perceptors() -> None:
    scene, _ = convert("scenes: a\nViTB32: false\nViTB16: true\nRN50x4: true\nViTL14_336px: true\n")
    assert scene["perceptors"] == [
        {"model": "ViT-B-16", "pretrained": "openai"},
        {"model": "ViT-L-14-336", "pretrained": "openai"},
        {"model": "RN50x4", "pretrained": "openai"},
    ]
    scene, warnings = convert("scenes: a\nViTB32: false\n")
    assert scene["perceptors"] == [{"model": "ViT-B-32", "pretrained": "openai"}]
    assert any("no CLIP model was selected" in w for w in warnings)


def test_2d_motion_maps_and_zoom_pixels_become_scale_factors() -> None:
    scene, warnings = convert(
        """
        scenes: a
        animation_mode: 2D
        width: 200
        height: 100
        translate_x: '-1700*sin(radians(1.5))'
        translate_y: np.cos(t)
        rotate_2d: 2
        zoom_x_2d: '10'
        zoom_y_2d: '5'
        pre_animation_steps: 0
        translate_z_3d: '5'
        """
    )
    assert scene["animation"] == "2d"
    assert scene["translate_x"] == "-1700*sin(radians(1.5))" and scene["translate_y"] == "cos(t)"
    assert scene["rotate_2d"] == 2
    assert (scene["zoom_x"], scene["zoom_y"]) == ("200 / (200 - (10))", "100 / (100 - (5))")
    assert "zoom" not in scene and "translate_z" not in scene  # pytti ignores 3D keys in 2D mode
    assert warnings == [
        "seed: not set (random in pytti); using seed 0 (set one to vary the result)",
        "translate_y: numpy calls rewritten as math functions ('np.cos(t)' -> 'cos(t)')",
    ]


def test_3d_camera_maps_to_the_3d_keys() -> None:
    scene, warnings = convert(
        """
        scenes: a
        animation_mode: 3D
        translate_z_3d: '(50+10*t)*sin(t/10*pi)**2'
        rotate_3d: '[cos(radians(1.5)), 0, -np.sin(radians(1.5)), 0]'
        field_of_view: 40
        lock_camera: false
        rotate_2d: 5
        """
    )
    assert scene["animation"] == "3d" and scene["depth_model"] == "flat"
    assert scene["translate_z"] == "(50+10*t)*sin(t/10*pi)**2"
    assert scene["rotate_3d"] == "[cos(radians(1.5)), 0, -sin(radians(1.5)), 0]"
    assert scene["field_of_view"] == 40 and scene["lock_camera"] is False
    assert "rotate_2d" not in scene
    assert any(w.startswith("depth_model: pytti used AdaBins") for w in warnings)


def test_animation_off_as_yaml_boolean_and_video_source() -> None:
    scene, _ = convert("scenes: a\nanimation_mode: off\ntranslate_x: '5'\nvideo_path: x.mp4\n")
    assert scene["animation"] == "off" and "translate_x" not in scene and "video_path" not in scene
    text, warnings = convert_pytti_text(
        "scenes: a\nanimation_mode: Video Source\nvideo_path: in.mp4\nframe_stride: 2\n"
        "flow_stabilization_weight: '0.5'\nedge_stabilization_weight: 1_[m.png]:0.2\n"
    )
    scene = yaml.safe_load(text)  # in.mp4 does not exist here, so this one is not validated
    assert scene["animation"] == "video" and scene["video_path"] == "in.mp4"
    assert scene["frame_stride"] == 2 and scene["reencode_each_frame"] is True  # pytti's default
    assert scene["stabilization"] == {"flow": 0.5, "edge": 1, "edge_mask": "m.png"}
    assert any("the stop ('0.2') is not supported" in w for w in warnings)


def test_unmapped_settings_are_reported_and_ui_settings_ignored() -> None:
    _, warnings = convert(
        """
        scenes: a
        image_model: Deep Image Prior
        use_mmc: true
        direct_init_weight: '0.5'
        edge_stabilization_weight: ''
        display_every: 10
        save_every: ${steps_per_frame}
        file_namespace: run
        my_own_key: 1
        seed: ${now:%f}
        """
    )
    text = "\n".join(warnings)
    for expected in (
        "image_model: 'Deep Image Prior' is not supported",
        "use_mmc / mmc_models: not supported",
        "direct_init_weight: there is no init_image; dropped",
        "my_own_key: unknown pytti-core setting",
        "seed: '${now:%f}' (random in pytti); using seed 0",
    ):
        assert expected in text
    for quiet in ("edge_stabilization_weight", "display_every", "save_every", "file_namespace"):
        assert quiet not in text


def test_missing_scenes_gives_a_placeholder_that_validates() -> None:
    scene, warnings = convert("scenes: ???\n")
    assert scene["scenes"] == [{"prompts": "a beautiful painting", "frames": 2}]
    assert any(w.startswith("scenes: not set") for w in warnings)


@pytest.mark.parametrize("name", ["pytti_default.yaml", "pytti_demo.yaml"])
def test_pytti_core_configs_convert_to_valid_scenes(name: str) -> None:
    path = DATA / name
    text, warnings = import_pytti_config(path)
    scene = load_scene_text(text)
    assert text.startswith(f"# Converted from {name}")
    assert all(f"#  - {w}" in text for w in warnings)
    assert len(build_plan(scene).frames) == scene.total_frames


def test_demo_config_details() -> None:
    path = DATA / "pytti_demo.yaml"
    scene = load_scene_text(import_pytti_config(path)[0])
    assert scene.steps_per_frame == 3 and scene.total_frames == 10  # 30 steps per scene / 3
    assert scene.seed == -4854551145582748953
    texts = [p.text for p in scene.scenes[0].prompts]
    assert texts[0] == "astrophotography #pixelart" and texts[-1] == "map"
    assert "deep space habitation ring made of glass" in texts


@pytest.mark.parametrize(
    ("text", "message"),
    [("a: [", "<pytti>:1:5: YAML syntax error"), ("- 1\n", "<pytti>: a pytti config must be a mapping")],
)
def test_bad_configs(text: str, message: str) -> None:
    with pytest.raises(SceneError) as info:
        convert_pytti_text(text)
    assert str(info.value).startswith(message)


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(SceneError, match="pytti config not found"):
        import_pytti_config(tmp_path / "nope.yaml")


def test_engine_settings_map_when_the_schema_has_them() -> None:
    scene, warnings = convert(
        """
        scenes: a
        image_model: Limited Palette
        palette_size: 8
        palettes: 20
        pixel_size: 2
        width: 90
        height: 60
        smoothing_weight: 0.5
        reset_lr_each_frame: false
        border_mode: mirror
        use_tensorboard: true
        gradient_accumulation_steps: 2
        """
    )
    assert (
        scene["image_model"] == "limited_palette" and scene["palette_size"] == 8 and "palettes" not in scene
    )
    assert (scene["width"], scene["height"], scene["pixel_size"]) == (180, 120, 2)
    assert scene["smoothing_weight"] == 0.5 and scene["border_mode"] == "mirror"
    assert scene["tensorboard"] is True and scene["gradient_accumulation_steps"] == 2
    assert "reset_lr_each_frame" not in scene  # false is our default; pytti's default (true) is written
    assert convert("scenes: a\n")[0]["reset_lr_each_frame"] is True


def test_init_weights_and_direct_image_prompts(tmp_path: Path) -> None:
    text, warnings = convert_pytti_text(
        "scenes: a\ninit_image: init.png\ndirect_init_weight: '0.5'\nsemantic_init_weight: '1_[m.png]:0.2'\n"
        "direct_image_prompts: 'a.png:2:0.1 | b.png | https://x.org/c.png:1'\n"
    )
    scene = yaml.safe_load(text)
    assert scene["direct_init_weight"] == 0.5 and scene["semantic_init_weight"] == 1.0
    assert scene["direct_image_prompts"] == [
        {"image": "a.png", "weight": 2, "stop": 0.1},
        {"image": "b.png", "weight": 1},
        {"image": "https://x.org/c.png", "weight": 1},  # URLs are fetched at render time (issue 14.5)
    ]
    assert any("semantic_init_weight: the mask/stop" in w for w in warnings)


def test_audio_filters_become_expression_variables() -> None:
    text, warnings = convert_pytti_text(
        "scenes: 'a:1 + fLo'\nanimation_mode: 2D\ntranslate_x: 10*fHi_prev\ninput_audio: song.mp3\n"
        "input_audio_filters:\n- {variable_name: fLo, f_center: 80, f_width: 20, order: 6}\n"
        "- {variable_name: fHi, f_center: 4000, f_width: 1000}\n"
    )
    scene = yaml.safe_load(text)
    assert scene["input_audio"] == "song.mp3"
    assert scene["input_audio_filters"] == [
        {"name": "fLo", "f_center": 80, "f_width": 20, "order": 6},
        {"name": "fHi", "f_center": 4000, "f_width": 1000, "order": 5},
    ]
    assert scene["translate_x"] == "10*fHi_prev"
    assert not any("translate_x" in w for w in warnings)


def test_pre_animation_steps_and_a_null_learning_rate_carry_over() -> None:
    scene, warnings = convert(
        "scenes: a\nanimation_mode: 2D\npre_animation_steps: 100\nlearning_rate: null\n"
    )
    assert scene["pre_animation_steps"] == 100
    assert "learning_rate" not in scene  # null: the image model's own rate, here as in pytti
    assert not any("pre_animation_steps" in w for w in warnings)
    assert convert("scenes: a\nanimation_mode: 2D\n")[0]["pre_animation_steps"] == 50  # pytti's default
    assert "pre_animation_steps" not in convert("scenes: a\n")[0]  # no animation: nothing to wait for
    scene, warnings = convert("scenes: a\nanimation_mode: 2D\npre_animation_steps: 12.5\n")
    assert "pre_animation_steps" not in scene and any("12.5" in w for w in warnings)
    yaml_text, _ = convert_pytti_text("scenes: a\nanimation_mode: 2D\nlearning_rate: 0.05\n")
    assert load_scene_text(yaml_text).learning_rate == 0.05
