"""Loading scene files: defaults, path resolution, and errors located at FILE:LINE:COL."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from pytti_engine.errors import SceneError, SceneErrors
from pytti_engine.scene import (
    Expr,
    OutputSettings,
    PerceptorSpec,
    PromptSpec,
    Scene,
    load_scene,
    load_scene_text,
)

from .conftest import MINIMAL

LoadFn = Callable[..., Scene]


def test_minimal_scene_has_the_documented_defaults(load: LoadFn) -> None:
    scene = load(MINIMAL)
    assert (scene.width, scene.height, scene.fps, scene.seed) == (256, 256, 12.0, 0)
    assert (scene.steps_per_frame, scene.cutouts, scene.cut_pow, scene.learning_rate) == (50, 16, 2.0, None)
    assert scene.pre_animation_steps == 0
    assert scene.perceptors == (PerceptorSpec(model="ViT-B-32", pretrained="openai", weight=1.0),)
    assert scene.animation == "off" and scene.init_image is None and scene.title is None
    assert (scene.translate_x, scene.translate_y, scene.rotate_2d, scene.zoom) == (
        Expr.constant(0),
        Expr.constant(0),
        Expr.constant(0),
        Expr.constant(1),
    )
    assert (scene.infill_mode, scene.sampling_mode) == ("wrap", "bilinear")
    assert scene.scene_prefix == "" and scene.scene_suffix == ""
    assert scene.output == OutputSettings(crf=18, preset="medium")
    stage = scene.scenes[0]
    assert stage.frames == 4 and stage.seconds is None and stage.transition_frames == 0
    assert stage.prompts == (
        PromptSpec("a lighthouse", Expr.constant(2)),
        PromptSpec("fog", Expr.constant(-1), stop=Expr.constant(-0.9)),
    )
    assert scene.total_frames == 4


def test_scene_is_frozen(load: LoadFn) -> None:
    scene = load(MINIMAL)
    with pytest.raises(ValueError, match="frozen"):
        scene.width = 512  # type: ignore[misc]


def test_full_stage1_scene(load: LoadFn, tmp_path: Path) -> None:
    (tmp_path / "init.png").write_bytes(b"png")
    (tmp_path / "w.safetensors").write_bytes(b"w")
    (tmp_path / "clip").mkdir()
    scene = load(
        """\
        title: Lighthouse
        width: 512
        height: 384
        fps: 24
        seed: 42
        steps_per_frame: 0
        perceptors:
          - {model: ViT-B-32, pretrained: openai}
          - {model: ViT-B-16, pretrained: w.safetensors, weight: 0.5}
          - {model: local-dir:clip}
        cutouts: 40
        cut_pow: 1
        learning_rate: 0.05
        init_image: init.png
        animation: 2d
        translate_x: "2 + sin(t)"
        translate_y: -1.5
        rotate_2d: 0.5
        zoom: "0:(1.0), 24:(1.05)"
        infill_mode: mirror
        sampling_mode: bicubic
        scenes:
          - prompts: "a lighthouse:2"
            seconds: 2
          - prompts: "dawn"
            frames: 10
            transition_frames: 4
        output: {crf: 0, preset: slow}
        """
    )
    assert scene.init_image == tmp_path / "init.png"
    assert scene.perceptors[1].pretrained == str(tmp_path / "w.safetensors")
    assert scene.perceptors[2].model == f"local-dir:{tmp_path / 'clip'}"
    assert scene.perceptors[2].pretrained is None
    assert scene.translate_x.source == "2 + sin(t)" and scene.translate_y == Expr.constant(-1.5)
    assert scene.cut_pow == 1.0 and isinstance(scene.cut_pow, float)
    assert scene.stage_frame_counts() == (48, 10)
    assert scene.output.crf == 0 and scene.output.preset == "slow"


@pytest.mark.parametrize("word", ["off", "no", "on", "yes"])
def test_yaml_words_like_off_stay_strings(load: LoadFn, word: str) -> None:
    text = f"title: {word}\nanimation: off\n" + MINIMAL
    scene = load(text)
    assert scene.animation == "off" and scene.title == word


@pytest.mark.parametrize(
    ("pretrained", "kind"),
    [("openai", "tag"), ("laion2b_s34b_b79k", "tag"), ("weights.pt", "path"), ("sub/w.bin", "path")],
)
def test_pretrained_tags_stay_and_paths_resolve(
    load: LoadFn, tmp_path: Path, pretrained: str, kind: str
) -> None:
    if kind == "path":
        (tmp_path / pretrained).parent.mkdir(exist_ok=True)
        (tmp_path / pretrained).write_bytes(b"w")
    scene = load(f"perceptors: [{{model: RN50, pretrained: {pretrained}}}]\n" + MINIMAL)
    expected = pretrained if kind == "tag" else str(tmp_path / pretrained)
    assert scene.perceptors[0].pretrained == expected


# Each case: scene text, the expected "LINE:COL: message" of the first error.
ERROR_CASES = [
    ("widht: 128\n" + MINIMAL, "1:1: unknown key 'widht' (did you mean 'width'?)"),
    ("width: -5\n" + MINIMAL, "1:8: width: Input should be greater than or equal to 16 (got -5)"),
    ("height: 9000\n" + MINIMAL, "1:9: height: Input should be less than or equal to 8192 (got 9000)"),
    ("width: 12.5\n" + MINIMAL, "1:8: width: Input should be a valid integer (got 12.5)"),
    ("width: true\n" + MINIMAL, "1:8: width: Input should be a valid integer (got True)"),
    ("width: '512'\n" + MINIMAL, "1:8: width: Input should be a valid integer (got '512')"),
    ("fps: 0\n" + MINIMAL, "1:6: fps: Input should be greater than 0 (got 0)"),
    ("cutouts: 0\n" + MINIMAL, "1:10: cutouts: Input should be greater than or equal to 1 (got 0)"),
    ("animation: 4d\n" + MINIMAL, "1:12: animation: Input should be 'off', '2d', '3d' or 'video' (got '4d')"),
    ("zoom: 0\n" + MINIMAL, "1:7: zoom: must be > 0 (a scale factor per frame: 1 = no zoom), got 0"),
    ("zoom: -1\n" + MINIMAL, "1:7: zoom: must be > 0"),
    (
        'translate_x: "2 + sinn(t)"\n' + MINIMAL,
        "1:19: translate_x: unknown function 'sinn' (did you mean 'sin'?)",
    ),
    ("translate_x: 2 + sinn(t)\n" + MINIMAL, "1:18: translate_x: unknown function 'sinn'"),
    ("rotate_2d: __import__('os')\n" + MINIMAL, "1:12: rotate_2d: unknown function '__import__'"),
    ("rotate_2d: [1, 2]\n" + MINIMAL, "1:12: rotate_2d: expected a number or an expression string, got list"),
    ("init_image: missing.png\n" + MINIMAL, "1:13: init_image: init image not found: "),
    (
        "perceptors: []\n" + MINIMAL,
        "1:13: perceptors: List should have at least 1 item after validation, not 0",
    ),
    (
        "perceptors: [{model: RN50, wieght: 2}]\n" + MINIMAL,
        "1:28: unknown key 'wieght' (did you mean 'weight'?) (in 'perceptors.0')",
    ),
    (
        "perceptors: [{pretrained: openai}]\n" + MINIMAL,
        "1:14: missing required key 'model' in 'perceptors.0'",
    ),
    (
        "perceptors: [{model: 'local-dir:nope'}]\n" + MINIMAL,
        "1:22: perceptors.0.model: local-dir model folder not found",
    ),
    (
        "perceptors: [{model: RN50, pretrained: ./w.pt}]\n" + MINIMAL,
        "1:40: perceptors.0.pretrained: pretrained weights file not found",
    ),
    ("output: {crf: 52}\n" + MINIMAL, "1:15: output.crf: Input should be less than or equal to 51 (got 52)"),
    ("output: {preset: quick}\n" + MINIMAL, "1:18: output.preset: Input should be"),
    ("output: {bitrate: 5}\n" + MINIMAL, "1:10: unknown key 'bitrate' (in 'output')"),
    ("width: 64\n", "1:1: missing required key 'scenes'"),
    ("scenes: []\n", "1:9: scenes: List should have at least 1 item after validation, not 0"),
    ("scenes: hello\n", "1:9: scenes: Input should be a list"),
    ("scenes:\n  - prompts: a\n", "2:5: scenes.0: give exactly one of 'frames' or 'seconds'"),
    (
        "scenes:\n  - {prompts: a, frames: 2, seconds: 1}\n",
        "2:5: scenes.0: give exactly one of 'frames' or 'seconds'",
    ),
    (
        "scenes:\n  - {prompts: a, frames: 0}\n",
        "2:26: scenes.0.frames: Input should be greater than or equal to 1 (got 0)",
    ),
    (
        "scenes:\n  - {prompts: a, frame: 2}\n",
        "2:18: unknown key 'frame' (did you mean 'frames'?) (in 'scenes.0')",
    ),
    ("scenes:\n  - {prompts: 'a:1:2:3', frames: 2}\n", "2:21: scenes.0.prompts: too many ':'"),
    (
        "scenes:\n  - {prompts: 'a:sinn(t)', frames: 2}\n",
        "2:18: scenes.0.prompts: weight: unknown function 'sinn'",
    ),
    ("scenes:\n  - {prompts: 5, frames: 2}\n", "2:15: scenes.0.prompts: prompts must be a string"),
    (
        "scenes:\n  - {prompts: a, frames: 2, transition_frames: 1}\n",
        "2:48: scenes.0.transition_frames: the first scene has no previous scene",
    ),
    ("width: 64\nwidth: 65\n" + MINIMAL, "2:1: duplicate key 'width'"),
    ("1: x\n" + MINIMAL, "1:1: keys must be plain words"),
    (
        "frames_per_second: 12\n" + MINIMAL,
        "1:1: unknown key 'frames_per_second' (pytti-core's name: here it is 'fps')",
    ),
    (
        "zoom_x_2d: 2\n" + MINIMAL,
        "1:1: unknown key 'zoom_x_2d' (pytti-core's name, in pixels per frame: here",
    ),
    ("ViTB16: true\n" + MINIMAL, "1:1: unknown key 'ViTB16' (pytti-core's CLIP flag: list models under"),
    ("save_every: 5\n" + MINIMAL, "1:1: unknown key 'save_every' (pytti-core's output setting"),
    ("width: [\n", "2:1: YAML syntax error: "),
    ("a: [1, 2\nb: 3\n", "1:4: YAML syntax error in a list [...] that starts here: expected ',' or ']'"),
    (
        'width: 64\nheight: 64\nfps: 12\nseed: 1\ntitle: "unterminated\nsteps_per_frame: 2\nscenes: []\n',
        "5:8: YAML syntax error in a quoted string that starts here: found unexpected end of stream (at line 8",
    ),
    ("a: {x: 1\nb: 3\n", "1:4: YAML syntax error in a mapping {...} that starts here: expected ',' or '}'"),
    (
        "a:\n  b: 1\n c: 2\n",
        "3:2: YAML syntax error: expected <block end>, but found '<block mapping start>' "
        "(while parsing a block mapping that starts at line 1)",
    ),
    (
        "input_audio_filters:\n  - {variable_name: bass, f_center: 80, f_width: 40}\n" + MINIMAL,
        "2:6: unknown key 'variable_name' (pytti-core's name: did you mean 'name'?) (in 'input_audio_filters.0')",
    ),
    (
        "direct_stabilization_weight: 0.3\n" + MINIMAL,
        "1:1: unknown key 'direct_stabilization_weight' (pytti-core's name: here it is "
        "'stabilization: {direct: ...}')",
    ),
    ("a: 1\n b: 2\n", "2:3: YAML syntax error: mapping values are not allowed here"),
    ("- 1\n- 2\n", "1:1: a scene file must be a mapping"),
    ("x: !!python/object:os.system ls\n", "1:4: YAML error: could not determine a constructor"),
]


@pytest.mark.parametrize(("text", "expected"), ERROR_CASES)
def test_errors_point_at_file_line_and_column(
    write_scene: Callable[[str], Path], text: str, expected: str
) -> None:
    path = write_scene(text)
    with pytest.raises(SceneError) as info:
        load_scene(path)
    first = info.value.errors[0] if isinstance(info.value, SceneErrors) else info.value
    assert str(first).startswith(f"{path}:{expected}"), str(info.value)


def test_all_errors_are_reported_in_file_order(write_scene: Callable[[str], Path]) -> None:
    path = write_scene(
        """\
        widht: 128
        height: -5
        animation: 4d
        translate_x: "2 + sinn(t)"
        scenes:
          - prompts: "a:1:2:3"
            frames: 3
          - prompts: "b"
        """
    )
    with pytest.raises(SceneErrors) as info:
        load_scene(path)
    lines = [(e.line, e.col) for e in info.value.errors]
    assert lines == [(1, 1), (2, 9), (3, 12), (4, 19), (6, 20), (8, 5)]
    assert str(info.value).count("\n") == 5
    assert all(e.path == str(path) for e in info.value.errors)


def test_missing_file_is_a_scene_error_without_a_line(tmp_path: Path) -> None:
    with pytest.raises(SceneError) as info:
        load_scene(tmp_path / "nope.yaml")
    assert str(info.value) == f"{tmp_path / 'nope.yaml'}: scene file not found"
    assert info.value.line is None
    with pytest.raises(SceneError, match="is a folder"):
        load_scene(tmp_path)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("", "<inline>: the scene file is empty"), ("# only a comment\n", "<inline>: the scene file is empty")],
)
def test_empty_text(text: str, expected: str) -> None:
    with pytest.raises(SceneError) as info:
        load_scene_text(text, name="<inline>")
    assert str(info.value).startswith(expected)


def test_inline_text_resolves_paths_against_base_dir(tmp_path: Path) -> None:
    (tmp_path / "i.png").write_bytes(b"x")
    scene = load_scene_text("init_image: i.png\n" + MINIMAL, base_dir=tmp_path)
    assert scene.init_image == tmp_path / "i.png"
    with pytest.raises(SceneError, match=r"^<ui>:1:13: init_image: init image not found"):
        load_scene_text("init_image: i.png\n" + MINIMAL, name="<ui>", base_dir=tmp_path / "elsewhere")


def test_alias_bombs_are_stopped() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [
        f"a{i}: &a{i} [*a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}]" for i in range(1, 9)
    ]
    with pytest.raises(SceneError, match="more than"):
        load_scene_text("\n".join(lines) + "\n" + MINIMAL)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("init_image: 5\n", "1:13: init_image: expected a file path"),
        ("output: 5\n", "1:9: output: expected a mapping (key: value, ...)"),
        ("fps: .nan\n", "1:6: fps: Input should be a finite number"),
        (
            "perceptors: [{model: a, weight: .inf}]\n",
            "1:33: perceptors.0.weight: Input should be a finite number",
        ),
        ("seed: 1e3\n", "1:7: seed: Input should be a valid integer (got 1000.0)"),
    ],
)
def test_friendly_type_messages(text: str, expected: str) -> None:
    with pytest.raises(SceneError) as info:
        load_scene_text(text + MINIMAL)
    assert str(info.value).startswith(f"<scene>:{expected}"), str(info.value)


def test_yaml_12_floats_without_a_dot_are_numbers() -> None:
    scene = load_scene_text("fps: 2.4e1\nlearning_rate: 5e-3\nscenes: [{prompts: a, seconds: 1e0}]\n")
    assert (scene.fps, scene.learning_rate, scene.scenes[0].seconds) == (24.0, 0.005, 1.0)


def test_too_many_frames_are_rejected_before_planning() -> None:
    with pytest.raises(SceneError, match=r"^<scene>:1:9: scenes: the scenes add up to 2000000 frames"):
        load_scene_text("scenes: [{prompts: a, frames: 1000000}, {prompts: b, frames: 1000000}]\n")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "translate_x: " + "9" * 400,
            "1:14: translate_x: expected a finite number, got 9999999999999999999999999999999999999...",
        ),
        ("translate_x: .inf", "1:14: translate_x: expected a finite number, got inf"),
        (
            "seed: " + "9" * 30,
            "1:7: seed: Input should be less than or equal to 18446744073709551615 (got 999999999999999999999999999999)",
        ),
        (
            "fps: " + "9" * 400,
            "1:6: fps: Input should be a valid number (got 9999999999999999999999999999999999999...)",
        ),
    ],
)
def test_huge_numbers_are_clean_errors(text: str, expected: str) -> None:
    with pytest.raises(SceneError) as info:
        load_scene_text(text + "\n" + MINIMAL)
    assert str(info.value) == f"<scene>:{expected}"
