"""Tests for pytti_engine.video: assembling frames into an MP4, probing it, decoding it."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pytti_engine import video
from pytti_engine.audio import decode_audio
from pytti_engine.errors import FFmpegError, PyttiError
from pytti_engine.video import (
    CODEC_ENCODERS,
    AudioTrack,
    EncodeSettings,
    ProbeBackend,
    VideoInfo,
    VideoOutputs,
    assemble_outputs,
    assemble_video,
    check_encoders,
    ffmpeg_exe,
    probe_video,
    read_frames,
)

COLOURS = [(220, 30, 30), (30, 200, 40), (40, 50, 210), (128, 128, 128), (250, 250, 250)]
# Probe backends usable here: ffmpeg alone always works; ffprobe only where one is installed.
BACKENDS: list[ProbeBackend] = ["ffmpeg", "ffprobe"] if video._find_ffprobe(ffmpeg_exe()) else ["ffmpeg"]


def write_frames(folder: Path, colours: list[tuple[int, int, int]], size: tuple[int, int]) -> list[Path]:
    """Solid-colour PNGs 000001.png, 000002.png, ... of ``size`` (width, height)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, colour in enumerate(colours, start=1):
        path = folder / f"{i:06d}.png"
        Image.new("RGB", size, colour).save(path)
        paths.append(path)
    return paths


def frame_error(frame: np.ndarray, colour: tuple[int, int, int]) -> float:
    """Mean absolute difference between an (H, W, 3) frame and a solid colour."""
    return float(np.abs(frame.astype(np.float64) - np.array(colour, dtype=np.float64)).mean())


@pytest.fixture(scope="module")
def video_12fps(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Five 32x32 solid-colour frames encoded at 12 fps."""
    root = tmp_path_factory.mktemp("video")
    frames = write_frames(root / "frames", COLOURS, (32, 32))
    return assemble_video(frames, root / "out.mp4", EncodeSettings(fps=12))


@pytest.mark.parametrize("backend", BACKENDS)
def test_probe_reports_frames_size_rate_codec(video_12fps: Path, backend: ProbeBackend) -> None:
    info = probe_video(video_12fps, backend=backend)
    assert (info.frames, info.width, info.height) == (5, 32, 32)
    assert info.fps == pytest.approx(12.0)
    assert info.duration == pytest.approx(5 / 12, abs=1e-3)
    assert (info.codec, info.pix_fmt) == ("h264", "yuv420p")


def test_no_temporary_files_left_beside_the_video(video_12fps: Path) -> None:
    assert sorted(p.name for p in video_12fps.parent.iterdir()) == ["frames", "out.mp4"]


def test_faststart_puts_the_index_before_the_media_data(video_12fps: Path) -> None:
    head = video_12fps.read_bytes()
    assert 0 <= head.find(b"moov") < head.find(b"mdat")


def test_read_frames_returns_the_input_colours(video_12fps: Path) -> None:
    decoded = read_frames(video_12fps)
    assert decoded.shape == (5, 32, 32, 3)
    assert decoded.dtype == np.uint8
    for frame, colour in zip(decoded, COLOURS, strict=True):
        assert frame_error(frame, colour) < 4.0


def test_only_the_listed_frames_are_encoded(tmp_path: Path) -> None:
    frames = write_frames(tmp_path / "frames", COLOURS[:3], (32, 32))
    Image.new("RGB", (32, 32), (0, 0, 0)).save(tmp_path / "frames" / "000004.png")  # a stale frame
    out = assemble_video(frames, tmp_path / "out.mp4", EncodeSettings(fps=12))
    decoded = read_frames(out)
    assert probe_video(out).frames == 3
    assert decoded.shape[0] == 3
    assert frame_error(decoded[-1], COLOURS[2]) < 4.0


def test_odd_size_is_padded_to_even_by_repeating_the_edge(tmp_path: Path) -> None:
    frames = write_frames(tmp_path / "frames", COLOURS[:3], (33, 33))
    out = assemble_video(frames, tmp_path / "odd.mp4", EncodeSettings(fps=12))
    info = probe_video(out)
    assert (info.frames, info.width, info.height, info.pix_fmt) == (3, 34, 34, "yuv420p")
    decoded = read_frames(out)
    assert decoded.shape == (3, 34, 34, 3)
    for frame, colour in zip(decoded, COLOURS[:3], strict=True):
        assert frame_error(frame, colour) < 4.0  # the padding repeats the frame's edge, not black


def test_non_integer_frame_rate(tmp_path: Path) -> None:
    frames = write_frames(tmp_path / "frames", COLOURS, (32, 32))
    info = probe_video(assemble_video(frames, tmp_path / "out.mp4", EncodeSettings(fps=12.5)))
    assert info.fps == pytest.approx(12.5)
    assert info.duration == pytest.approx(5 / 12.5, abs=1e-3)


def test_mismatched_frame_sizes_are_refused(tmp_path: Path) -> None:
    frames = write_frames(tmp_path / "a", COLOURS[:2], (32, 32)) + write_frames(
        tmp_path / "b", COLOURS[:1], (48, 32)
    )
    with pytest.raises(PyttiError, match=r"48x32 .* 32x32"):
        assemble_video(frames, tmp_path / "out.mp4", EncodeSettings(fps=12))
    assert not (tmp_path / "out.mp4").exists()


def test_missing_frame_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    frames = write_frames(tmp_path / "frames", COLOURS[:3], (32, 32))
    before = {p: p.read_bytes() for p in frames}
    frames[1].unlink()
    with pytest.raises(PyttiError, match="000002.png"):
        assemble_video(frames, tmp_path / "out.mp4", EncodeSettings(fps=12))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frames"]
    assert all(p.read_bytes() == before[p] for p in (frames[0], frames[2]))


def test_empty_frame_list_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PyttiError, match="empty"):
        assemble_video([], tmp_path / "out.mp4", EncodeSettings(fps=12))


def test_ffmpeg_failure_carries_ffmpegs_message_and_keeps_the_old_video(tmp_path: Path) -> None:
    frames = write_frames(tmp_path / "frames", COLOURS[:2], (32, 32))
    before = {p: p.read_bytes() for p in frames}
    out = tmp_path / "out.mp4"
    out.write_bytes(b"the previous video")
    with pytest.raises(FFmpegError, match="no_such_encoder") as caught:
        assemble_video(frames, out, EncodeSettings(fps=12, codec="no_such_encoder"))
    assert "exit" in str(caught.value)
    assert out.read_bytes() == b"the previous video"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frames", "out.mp4"]
    assert all(p.read_bytes() == data for p, data in before.items())


def test_bad_settings_and_metadata_are_refused(tmp_path: Path) -> None:
    with pytest.raises(PyttiError, match="fps"):
        EncodeSettings(fps=0)
    frames = write_frames(tmp_path / "frames", COLOURS[:1], (32, 32))
    with pytest.raises(PyttiError, match="metadata key"):
        assemble_video(frames, tmp_path / "out.mp4", EncodeSettings(fps=12), metadata={"a=b": "c"})


@pytest.mark.parametrize("backend", BACKENDS)
def test_metadata_round_trip(tmp_path: Path, backend: ProbeBackend) -> None:
    manifest = json.dumps(
        {"frames": [{"index": i, "sha256": "ab" * 32} for i in range(6)], "note": "a=b;#\\é"}
    )
    assert len(manifest) > 255  # longer than ffmpeg prints on one log line
    tags = {"title": "Lighthouse", "comment": "two\nlines", "pytti_manifest": manifest}
    frames = write_frames(tmp_path / "frames", COLOURS[:2], (32, 32))
    out = assemble_video(frames, tmp_path / "out.mp4", EncodeSettings(fps=12), metadata=tags)
    info = probe_video(out, backend=backend)
    assert {k: info.metadata.get(k) for k in tags} == tags
    assert json.loads(info.metadata["pytti_manifest"]) == json.loads(manifest)


@pytest.mark.parametrize("backend", BACKENDS)
def test_standard_tags_round_trip_without_custom_keys(tmp_path: Path, backend: ProbeBackend) -> None:
    frames = write_frames(tmp_path / "frames", COLOURS[:2], (32, 32))
    out = assemble_video(frames, tmp_path / "out.mp4", EncodeSettings(fps=12), metadata={"title": "T"})
    assert probe_video(out, backend=backend).metadata["title"] == "T"


@pytest.mark.skipif(len(BACKENDS) < 2, reason="no ffprobe installed")
def test_ffprobe_and_ffmpeg_probes_agree(tmp_path: Path) -> None:
    frames = write_frames(tmp_path / "frames", COLOURS, (33, 33))
    tags = {"comment": "c", "pytti_manifest": "x" * 400}
    out = assemble_video(frames, tmp_path / "out.mp4", EncodeSettings(fps=30000 / 1001), metadata=tags)
    by_ffprobe: VideoInfo = probe_video(out, backend="ffprobe")
    by_ffmpeg: VideoInfo = probe_video(out, backend="ffmpeg")
    assert by_ffprobe == by_ffmpeg


def test_ffmpeg_exe_honours_ffmpeg_binary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    link = tmp_path / "my-ffmpeg"
    link.symlink_to(ffmpeg_exe())
    monkeypatch.setenv("FFMPEG_BINARY", str(link))
    assert ffmpeg_exe() == str(link)
    monkeypatch.setenv("FFMPEG_BINARY", str(tmp_path / "missing-ffmpeg"))
    with pytest.raises(FFmpegError, match="FFMPEG_BINARY"):
        ffmpeg_exe()


def test_probe_and_read_errors(tmp_path: Path) -> None:
    with pytest.raises(PyttiError, match="not found"):
        probe_video(tmp_path / "missing.mp4")
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"this is not a video" * 10)
    for backend in BACKENDS:
        with pytest.raises(FFmpegError, match="junk.mp4"):
            probe_video(junk, backend=backend)
    with pytest.raises(FFmpegError, match="Invalid data|moov atom not found"):
        read_frames(junk)


def test_parse_ffmetadata_unescapes_and_skips_comments_and_sections() -> None:
    text = ";FFMETADATA1\n# note\ntitle=a\\=b\nmulti=one\\\ntwo\npath=c:\\\\d\n[CHAPTER]\ntitle=ch\n"
    assert video._parse_ffmetadata(text) == {"title": "a=b", "multi": "one\ntwo", "path": "c:\\d"}


def test_input_frames_are_only_read(tmp_path: Path) -> None:
    frames = write_frames(tmp_path / "frames", COLOURS[:2], (32, 32))
    stamps = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in frames}
    assemble_video(frames, tmp_path / "out.mp4", EncodeSettings(fps=12))
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in frames} == stamps
    assert os.access(tmp_path / "out.mp4", os.R_OK)


def test_ffmpeg_failure_shows_the_first_error_line(tmp_path: Path) -> None:
    frames = write_frames(tmp_path / "frames", COLOURS[:1], (32, 32))
    with pytest.raises(FFmpegError, match="no_such_preset"):
        assemble_video(frames, tmp_path / "out.mp4", EncodeSettings(fps=12, preset="no_such_preset"))
    assert not (tmp_path / "out.mp4").exists()


# --- output options (issue 7): codecs, sound, loop/boomerang, GIF, WebM, interpolation ----------------


def moving_frames(folder: Path, count: int, size: int = 32) -> list[Path]:
    """Frames with a white square moving right over a changing background (something to interpolate)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        pixels = np.full((size, size, 3), (i * 15, 40, 90), dtype=np.uint8)
        pixels[8:16, 2 * i : 2 * i + 8] = 255
        path = folder / f"{i + 1:06d}.png"
        Image.fromarray(pixels).save(path)
        paths.append(path)
    return paths


def write_tone(path: Path, seconds: float, rate: int = 8000) -> Path:
    """A 440 Hz tone encoded by ffmpeg from numpy samples."""
    t = np.arange(int(seconds * rate)) / rate
    samples = (0.3 * np.sin(2 * np.pi * 440 * t)).astype("<f4")
    args = [ffmpeg_exe(), "-y", "-loglevel", "error", "-f", "f32le", "-ar", str(rate), "-ac", "1", "-i", "-"]
    subprocess.run([*args, str(path)], input=samples.tobytes(), check=True)
    return path


@pytest.mark.parametrize("seconds", [0.5, 3.0])  # a track shorter and longer than the video
def test_mp4_with_sound_lasts_exactly_as_long_as_its_frames(tmp_path: Path, seconds: float) -> None:
    frames = moving_frames(tmp_path / "frames", 12)
    tone = write_tone(tmp_path / "tone.wav", seconds)
    outputs = VideoOutputs(EncodeSettings(fps=12), audio=AudioTrack(tone, offset=0.25))
    (out,) = assemble_outputs(frames, tmp_path / "out.mp4", outputs)
    info = probe_video(out)
    assert (info.frames, info.duration) == (12, pytest.approx(1.0, abs=1e-3))
    samples, rate = decode_audio(out)
    assert len(samples) / rate == pytest.approx(1.0, abs=1 / 12)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frames", "out.mp4", "tone.wav"]


def test_gif_and_webm_beside_the_mp4_have_every_frame(tmp_path: Path) -> None:
    frames = moving_frames(tmp_path / "frames", 6)
    outputs = VideoOutputs(EncodeSettings(fps=12), gif=True, webm=True)
    written = assemble_outputs(frames, tmp_path / "clip.mp4", outputs)
    assert [p.name for p in written] == ["clip.mp4", "clip.webm", "clip.gif"]
    for path, codec in zip(written, ["h264", "vp9", "gif"], strict=True):
        info = probe_video(path)
        assert (info.frames, info.codec, info.width) == (6, codec, 32)
        assert read_frames(path).shape == (6, 32, 32, 3)
    assert written[2].read_bytes()[:6] == b"GIF89a"
    decoded = read_frames(written[2]).astype(np.int16)
    source = np.asarray(Image.open(frames[3]).convert("RGB"), dtype=np.int16)
    assert np.abs(decoded[3] - source).mean() < 12  # a palette fitted to the frames, not a fixed one


def test_interpolation_doubles_the_frame_count(tmp_path: Path) -> None:
    frames = moving_frames(tmp_path / "frames", 12)
    outputs = VideoOutputs(EncodeSettings(fps=12, interpolate_to=24))
    info = probe_video(assemble_outputs(frames, tmp_path / "smooth.mp4", outputs)[0])
    assert abs(info.frames - 24) <= 2
    assert info.fps == pytest.approx(24.0)


def test_boomerang_and_loop_repeat_the_frames(tmp_path: Path) -> None:
    frames = moving_frames(tmp_path / "frames", 4)
    outputs = VideoOutputs(EncodeSettings(fps=12), loop=2, boomerang=True)
    order = outputs.sequence(frames)
    assert [p.name[-5] for p in order] == list("1234321234"[:6] * 2)  # 1 2 3 4 3 2, twice
    decoded = read_frames(assemble_outputs(frames, tmp_path / "b.mp4", outputs)[0])
    assert decoded.shape[0] == 12
    assert np.abs(decoded[4].astype(int) - decoded[2].astype(int)).mean() < 3  # frame 3 again on the way back


@pytest.mark.parametrize(("codec", "name"), [("h265", "hevc"), ("vp9", "vp9")])
def test_h265_and_vp9(tmp_path: Path, codec: str, name: str) -> None:
    frames = moving_frames(tmp_path / "frames", 3)
    settings = EncodeSettings(fps=12, codec=CODEC_ENCODERS[codec], crf=30, preset="ultrafast")
    info = probe_video(assemble_outputs(frames, tmp_path / "c.mp4", VideoOutputs(settings))[0])
    assert (info.frames, info.codec, info.pix_fmt) == (3, name, "yuv420p")


def fake_ffmpeg(folder: Path, encoders: str) -> Path:
    """A stand-in ffmpeg whose ``-encoders`` list holds only ``encoders`` (for 'missing codec' checks)."""
    script = folder / "ffmpeg"
    lines = "\n".join(f" V....D {name:20} fake" for name in encoders.split())
    script.write_text(
        f'#!/bin/sh\ncase "$*" in\n  *-encoders*) printf "Encoders:\\n ------\\n{lines}\\n" ;;\n'
        '  *encoder=*) printf "    Supported pixel formats: yuv420p\\n" ;;\n  *) exit 1 ;;\nesac\n'
    )
    script.chmod(0o755)
    return script


def test_a_codec_ffmpeg_lacks_fails_before_encoding_and_keeps_the_frames(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    frames = moving_frames(tmp_path / "frames", 2)
    before = {p: p.read_bytes() for p in frames}
    monkeypatch.setenv("FFMPEG_BINARY", str(fake_ffmpeg(tmp_path, "libx264 aac")))
    outputs = VideoOutputs(EncodeSettings(fps=12, codec="libx265"))
    with pytest.raises(FFmpegError, match=r"output.codec: this ffmpeg .* has no 'libx265' encoder"):
        assemble_outputs(frames, tmp_path / "out.mp4", outputs)
    with pytest.raises(FFmpegError, match="output.webm: .*'libvpx-vp9'"):
        check_encoders(VideoOutputs(EncodeSettings(fps=12), webm=True))
    with pytest.raises(FFmpegError, match="output.pix_fmt: .*cannot write yuv444p"):
        check_encoders(VideoOutputs(EncodeSettings(fps=12, pix_fmt="yuv444p")))
    assert {p: p.read_bytes() for p in frames} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ffmpeg", "frames"]


def test_output_settings_come_from_the_scene(tmp_path: Path) -> None:
    from pytti_engine.scene import load_scene

    write_tone(tmp_path / "song.wav", 1.0)
    scene_path = tmp_path / "scene.yaml"
    scene_path.write_text(
        "fps: 10\ninput_audio: song.wav\ninput_audio_offset: 0.5\n"
        "output: {codec: vp9, crf: 30, fps: 20, interpolate_to: 40, boomerang: true, gif: true}\n"
        "scenes: [{prompts: a, frames: 3}]\n"
    )
    outputs = VideoOutputs.from_scene(load_scene(scene_path))
    assert outputs.settings == EncodeSettings(fps=20, crf=30, codec="libvpx-vp9", interpolate_to=40)
    assert outputs.audio == AudioTrack(tmp_path / "song.wav", 0.5)
    assert (outputs.boomerang, outputs.gif, outputs.webm, outputs.loop) == (True, True, False, 1)
    scene_path.write_text(
        "output: {audio: false}\ninput_audio: song.wav\nscenes: [{prompts: a, frames: 1}]\n"
    )
    assert VideoOutputs.from_scene(load_scene(scene_path)).audio is None
