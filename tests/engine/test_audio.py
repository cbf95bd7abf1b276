"""Audio reactivity: band envelopes, `<name>_prev`, the analysis cache, and audio keys in scene files."""

from __future__ import annotations

import subprocess
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pytti_engine.audio import (
    AudioSpec,
    BandFilter,
    analysis_key,
    band_envelopes,
    decode_audio,
    load_or_analyze,
    probe_audio,
)
from pytti_engine.errors import PyttiError, SceneError
from pytti_engine.scene import build_plan, load_scene
from pytti_engine.video import ffmpeg_exe

RATE = 8000
FPS = 10
FILTERS = [BandFilter("lo", 100, 40), BandFilter("a4", 440, 80), BandFilter("hi", 2000, 400)]


def tone(seconds: float = 2.5, start: float = 1.0, freq: float = 440.0, rate: int = RATE) -> np.ndarray:
    """Silence, then a sine switched on at ``start`` (a 10 ms raised-cosine fade-in, so no click)."""
    t = np.arange(int(seconds * rate)) / rate
    fade = np.clip((t - start) / 0.01, 0.0, 1.0)
    envelope = np.where(t >= start, 0.5 - 0.5 * np.cos(np.pi * fade), 0.0)
    return (0.5 * envelope * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def write_audio(path: Path, samples: np.ndarray, rate: int = RATE) -> Path:
    """Encode mono float samples with ffmpeg (the container follows the suffix)."""
    args = [ffmpeg_exe(), "-y", "-loglevel", "error", "-f", "f32le", "-ar", str(rate), "-ac", "1", "-i", "-"]
    subprocess.run([*args, str(path)], input=samples.astype("<f4").tobytes(), check=True)
    return path


@pytest.fixture(scope="module")
def tone_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_audio(tmp_path_factory.mktemp("audio") / "tone.wav", tone())


@pytest.fixture(autouse=True)
def _cache_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTTI_CACHE_DIR", str(tmp_path / "cache"))


# --- envelopes -------------------------------------------------------------------------------------------


def test_a_440_hz_tone_at_1_s_lights_only_its_band_and_only_after_1_s() -> None:
    bands = band_envelopes(tone(), RATE, FILTERS, fps=FPS)
    assert bands.frames == 25
    before = [bands.value(name, k) for name in bands.names for k in range(10)]  # t < 1 s
    assert max(before) == 0.0
    a4 = [bands.value("a4", k) for k in range(10, 25)]
    assert min(a4) > 0.85 and max(a4) == pytest.approx(1.0)
    others = [bands.value(name, k) for name in ("lo", "hi") for k in range(10, 25)]
    assert max(others) < 0.05


def test_prev_is_really_the_previous_frames_value() -> None:
    bands = band_envelopes(tone(), RATE, FILTERS, fps=FPS)
    for k in range(1, bands.frames):
        env = bands.at(k)
        assert env["a4_prev"] == bands.value("a4", k - 1)
        assert env["a4"] == bands.value("a4", k)
    assert bands.at(10)["a4_prev"] == 0.0 and bands.at(11)["a4_prev"] > 0.85
    assert bands.at(0)["a4_prev"] == 0.0  # nothing before the start of the file


def test_offset_moves_the_window_and_first_prev_reads_before_it() -> None:
    bands = band_envelopes(tone(), RATE, FILTERS, fps=FPS, offset=1.0)
    assert bands.frames == 15
    assert bands.value("a4", 0) > 0.85
    assert bands.at(0)["a4_prev"] == 0.0  # the window 0.9-1.0 s of the file: still silent
    assert bands.value("a4", 15) == 0.0  # after the end of the track


def test_silence_gives_zeros_and_fps_is_checked() -> None:
    bands = band_envelopes(np.zeros(RATE, np.float32), RATE, FILTERS, fps=FPS)
    assert all(v == 0.0 for series in bands.series for v in series)
    with pytest.raises(PyttiError, match="fps"):
        band_envelopes(tone(), RATE, FILTERS, fps=0)


def test_band_above_nyquist_is_refused() -> None:
    with pytest.raises(PyttiError, match="above the Nyquist frequency"):
        band_envelopes(tone(), RATE, [BandFilter("x", 5000, 100)], fps=FPS)
    with pytest.raises(PyttiError, match="reaches the Nyquist"):
        band_envelopes(tone(), RATE, [BandFilter("x", 3900, 400)], fps=FPS)


# --- decoding, probing, caching --------------------------------------------------------------------------


def test_decode_round_trips_through_ffmpeg(tone_wav: Path) -> None:
    info = probe_audio(tone_wav)
    assert (info.sample_rate, info.codec) == (RATE, "pcm_s16le")
    assert info.duration == pytest.approx(2.5, abs=0.01)
    samples, rate = decode_audio(tone_wav)
    assert rate == RATE and samples.shape == (int(2.5 * RATE),)
    assert np.abs(samples - tone()).max() < 1e-3  # 16-bit quantization


def test_probe_errors_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(PyttiError, match="audio file not found"):
        probe_audio(tmp_path / "missing.wav")
    text = tmp_path / "notes.wav"
    text.write_text("not a sound\n" * 20)
    with pytest.raises(PyttiError, match="not an audio file ffmpeg can read: .*Invalid data"):
        probe_audio(text)
    image = tmp_path / "picture.png"
    Image.new("RGB", (8, 8)).save(image)
    with pytest.raises(PyttiError, match="has no audio stream"):
        probe_audio(image)


def test_analysis_is_cached_by_content_and_parameters(tone_wav: Path, tmp_path: Path) -> None:
    spec = AudioSpec(tone_wav, 0.0, tuple(FILTERS))
    first = load_or_analyze(spec, FPS, tmp_path / "c")
    again = load_or_analyze(spec, FPS, tmp_path / "c")
    assert (first.reused, again.reused) == (False, True)
    assert again.bands == first.bands and again.path == first.path
    other = AudioSpec(tone_wav, 0.5, tuple(FILTERS))
    assert analysis_key(other, FPS) != first.key != analysis_key(spec, 12)


# --- scene files ---------------------------------------------------------------------------------------


def scene_file(folder: Path, body: str) -> Path:
    path = folder / "scene.yaml"
    path.write_text(textwrap.dedent(body) + "scenes:\n  - prompts: 'a lighthouse:1 + a4'\n    frames: 20\n")
    return path


def test_band_names_work_in_every_expression(tone_wav: Path) -> None:
    scene = load_scene(
        scene_file(
            tone_wav.parent,
            """\
            fps: 10
            animation: 2d
            input_audio: tone.wav
            input_audio_filters: [{name: a4, f_center: 440, f_width: 80}]
            translate_x: "10 * a4 - a4_prev"
            """,
        )
    )
    plan = build_plan(scene)
    assert [f.translate_x for f in plan.frames[:10]] == [0.0] * 10
    f11, f12 = plan.frames[10], plan.frames[11]
    a4_11, a4_12 = dict(f11.bands)["a4"], dict(f12.bands)["a4"]
    assert a4_11 > 0.85 and f11.translate_x == pytest.approx(10 * a4_11)
    assert f12.translate_x == pytest.approx(10 * a4_12 - a4_11)
    assert f11.prompts[0].weight == pytest.approx(1 + a4_11)
    assert f11.to_dict()["bands"] == {"a4": a4_11}


def test_pytti_plan_shows_the_band_curves(tone_wav: Path) -> None:
    from pytti_engine.scene.report import plan_csv, plan_table

    body = "fps: 10\ninput_audio: tone.wav\ninput_audio_filters: [{name: a4, f_center: 440, f_width: 80}]\n"
    plan = build_plan(load_scene(scene_file(tone_wav.parent, body)))
    header, *rows = plan_csv(plan).splitlines()
    column = header.split(",").index("bands[a4]")
    curve = [float(row.split(",")[column]) for row in rows]
    assert curve[:10] == [0.0] * 10 and min(curve[10:]) > 0.85
    assert "bands[a4]" in plan_table(plan)


def test_offset_past_the_end_reads_silence() -> None:
    bands = band_envelopes(tone(), RATE, FILTERS, fps=FPS, offset=5.0)
    assert bands.frames == 0 and bands.at(0) == {f"{n}{s}": 0.0 for n in bands.names for s in ("", "_prev")}


def test_scenes_without_audio_plan_as_before(tmp_path: Path) -> None:
    plan = build_plan(load_scene(scene_file(tmp_path, "fps: 10\n"), ["scenes.0.prompts=a"]))
    assert "bands" not in plan.frames[0].to_dict()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("input_audio: missing.wav\n", r"scene.yaml:1:14: input_audio: audio file not found"),
        ("input_audio: notes.txt\n", r"scene.yaml:1:14: input_audio: .*not an audio file ffmpeg can read"),
        (
            "input_audio: tone.wav\ninput_audio_filters: [{name: hi, f_center: 5000, f_width: 100}]\n",
            r"scene.yaml:2:44: input_audio_filters.0.f_center: filter 'hi': f_center 5000 Hz is above the "
            r"Nyquist frequency \(4000 Hz for a 8000 Hz file\)",
        ),
        (
            "input_audio_filters: [{name: a4, f_center: 440, f_width: 80}]\n",
            r"scene.yaml:1:22: input_audio_filters: input_audio_filters need input_audio",
        ),
        (
            "input_audio: tone.wav\ninput_audio_filters: [{name: sin, f_center: 440, f_width: 80}]\n",
            r"2:30: input_audio_filters.0.name: 'sin' is taken",
        ),
        (
            "input_audio: tone.wav\ninput_audio_filters: [{name: a4, f_center: 440, f_width: 80}, "
            "{name: a4, f_center: 100, f_width: 20}]\n",
            r"input_audio_filters.1.name: duplicate filter name 'a4'",
        ),
        ("translate_x: 'a4'\n", r"translate_x: unknown name 'a4'"),
        (
            "input_audio: tone.wav\ninput_audio_offset: 3\n",
            r"2:21: input_audio_offset: 3 s is past the end of input_audio \(2.5 s\)",
        ),
    ],
)
def test_bad_audio_settings_are_scene_errors_with_positions(tone_wav: Path, body: str, message: str) -> None:
    (tone_wav.parent / "notes.txt").write_text("hello\n")
    path = tone_wav.parent / "scene.yaml"
    path.write_text(body + "scenes: [{prompts: a, frames: 2}]\n")
    with pytest.raises(SceneError, match=message):
        load_scene(path)
