"""Assemble rendered frames into videos (MP4, WebM, GIF) with ffmpeg, and inspect or decode videos.

Every ffmpeg call goes through ffmpeg-python with ``cmd=ffmpeg_exe()``, so the same code runs against a
system ffmpeg (Debian's brings ``ffprobe``) or the static binary in the ``imageio-ffmpeg`` wheel (which has
no ``ffprobe``).

Encoding (:func:`assemble_video`):

- The frames are the *explicit* list of files passed in, never a glob, so stale frames in the same folder
  are never picked up. Each file is decoded with Pillow and piped to ffmpeg as raw RGB, so ffmpeg sees
  exactly ``len(frames)`` frames at exactly ``settings.fps``.
- All frames must have the same size. H.264 in ``yuv420p`` needs even dimensions, so a frame with an odd
  width or height is **padded** (never scaled) to the next even size by repeating its last column and/or
  row: a 33x33 render becomes a 34x34 video whose top-left 33x33 pixels are the frame.
- The file is written to a temporary file in the destination folder, fsynced and moved into place with
  ``os.replace``: a failed encode leaves no partial file (and an older video at ``out`` untouched), and
  the input frames are only ever read.
- ``metadata`` becomes MP4 container (global) metadata. Keys the MP4 muxer maps to iTunes atoms
  (``title``, ``comment``, ...; see ``_ITUNES_KEYS``) are written as such; if any other key is present the
  muxer's ``use_metadata_tags`` flag is set so custom keys (such as a run manifest) survive.

Outputs (:func:`assemble_outputs`, from a scene's ``output:`` via :meth:`VideoOutputs.from_scene`): the
MP4 in h264/h265/vp9 at any crf/preset/pix_fmt, sound muxed with an offset and cut to the video's length,
loop/boomerang frame orders, a palette-optimized GIF, a VP9/Opus WebM, and motion-compensated
interpolation (``minterpolate``). :func:`check_encoders` refuses, before any encode, an encoder, pixel
format or filter the ffmpeg binary lacks. docs/outputs.md has the details.

Probing (:func:`probe_video`) uses ``ffprobe`` when one exists (beside the ffmpeg binary or on ``PATH``),
otherwise ``ffmpeg`` itself: a stream-copy pass into the ``framecrc`` muxer counts the packets and sums
their durations, its log gives codec, pixel format and size, and the ``ffmetadata`` muxer gives the
container metadata in full. Both backends define the values the same way (frames = packets of the first
video stream, duration = that stream's duration, fps = frames / duration), so they give the same results.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path
from types import MappingProxyType
from typing import IO, Any, Literal

import ffmpeg
import numpy as np
from PIL import Image

from pytti_engine.atomic import create_temp_beside
from pytti_engine.errors import DISK_FULL_ERRNOS, FFmpegError, OutputError, PyttiError, disk_full_error

ProbeBackend = Literal["auto", "ffprobe", "ffmpeg"]
Container = Literal["mp4", "webm", "gif"]

#: The scene's ``output.codec`` names -> ffmpeg encoders.
CODEC_ENCODERS: Mapping[str, str] = MappingProxyType(
    {"h264": "libx264", "h265": "libx265", "vp9": "libvpx-vp9"}
)
# x264-style preset names -> libvpx-vp9 -cpu-used (0 = slowest/best ... 5 = fastest with -deadline good)
_VP9_CPU_USED: Mapping[str, int] = MappingProxyType(
    {
        "ultrafast": 5,
        "superfast": 5,
        "veryfast": 4,
        "faster": 4,
        "fast": 3,
        "medium": 2,
        "slow": 1,
        "slower": 1,
        "veryslow": 0,
        "placebo": 0,
    }
)

# Global tags the MP4 muxer writes as iTunes ("ilst") atoms; any other key needs +use_metadata_tags.
_ITUNES_KEYS = frozenset(
    {
        "title",
        "artist",
        "album_artist",
        "composer",
        "album",
        "date",
        "comment",
        "genre",
        "copyright",
        "grouping",
        "lyrics",
        "description",
        "synopsis",
        "show",
        "episode_id",
        "network",
        "keywords",
    }
)
_ERROR_HEAD_LINES = 3
_ERROR_TAIL_LINES = 8
_VIDEO_STREAM_RE = re.compile(
    r"Stream #\d+:\d+\S*: Video: (?P<codec>[^\s,]+)[^,\n]*, (?P<pix_fmt>[a-z0-9_]+)[^\n]*?, "
    r"(?P<width>\d+)x(?P<height>\d+)"
)
_FFMETADATA_TOKEN_RE = re.compile(r"\\(.)|(=)|(\n)|([^\\=\n]+)", re.DOTALL)


@dataclass(frozen=True)
class EncodeSettings:
    """How :func:`assemble_video` encodes.

    Args:
        fps: frames per second of the output (any positive rate; 29.97 becomes 30000/1001).
        crf: constant rate factor (lower is better; 18 is visually lossless for libx264).
        preset: encoder speed/size trade-off (libx264: ``ultrafast`` ... ``veryslow``).
        codec: ffmpeg encoder name: ``libx264`` (H.264), ``libx265`` (H.265) or ``libvpx-vp9`` (VP9) get
            their own quality options; any other encoder gets ``-crf`` and ``-preset`` as given.
        pix_fmt: output pixel format; ``yuv420p`` plays everywhere.
        interpolate_to: motion-interpolate to this frame rate with ffmpeg's ``minterpolate`` (mci); the
            last frame is held one frame longer first, so N frames at ``fps`` become about
            ``N * interpolate_to / fps - 1`` frames.
    """

    fps: float
    crf: int = 18
    preset: str = "medium"
    codec: str = "libx264"
    pix_fmt: str = "yuv420p"
    interpolate_to: float | None = None

    def __post_init__(self) -> None:
        if not (math.isfinite(self.fps) and self.fps > 0):
            raise PyttiError(f"fps must be a positive number, got {self.fps!r}")
        if self.crf < 0:
            raise PyttiError(f"crf must be >= 0, got {self.crf!r}")
        rate = self.interpolate_to
        if rate is not None and not (math.isfinite(rate) and rate > self.fps):
            raise PyttiError(f"interpolate_to must be above fps ({self.fps:g}), got {rate!r}")


@dataclass(frozen=True)
class AudioTrack:
    """A sound file to mux into a video.

    Args:
        path: any file ffmpeg reads with an audio stream.
        offset: seconds into the file where the video starts.
    """

    path: Path
    offset: float = 0.0


@dataclass(frozen=True)
class VideoOutputs:
    """Every video a run produces from its frames (the scene's ``output:``; docs/outputs.md).

    Args:
        settings: the main MP4's encoding (its frame rate is the playback rate of the frames).
        audio: sound to mux into the MP4 and WebM, cut to the video's length.
        loop: play the (boomeranged) sequence this many times.
        boomerang: play the frames forward, then backward without repeating the end frames.
        gif: also write a palette-optimized, endlessly looping GIF (no interpolation, no sound).
        webm: also write a VP9 WebM (Opus sound), at the same crf and interpolation.
    """

    settings: EncodeSettings
    audio: AudioTrack | None = None
    loop: int = 1
    boomerang: bool = False
    gif: bool = False
    webm: bool = False

    @classmethod
    def from_scene(cls, scene: Any) -> VideoOutputs:
        """The outputs a validated ``Scene`` asks for (``output.audio`` defaults to ``input_audio``)."""
        out = scene.output
        settings = EncodeSettings(
            fps=float(out.fps or scene.fps),
            crf=out.crf,
            preset=out.preset,
            codec=CODEC_ENCODERS[out.codec],
            pix_fmt=out.pix_fmt,
            interpolate_to=out.interpolate_to,
        )
        audio: AudioTrack | None = None
        if isinstance(out.audio, Path):
            audio = AudioTrack(out.audio, float(out.audio_offset or 0.0))
        elif out.audio is None and getattr(scene, "input_audio", None) is not None:
            offset = out.audio_offset if out.audio_offset is not None else scene.input_audio_offset
            audio = AudioTrack(Path(scene.input_audio), float(offset))
        return cls(settings, audio, out.loop, out.boomerang, out.gif, out.webm)

    def sequence(self, frames: Sequence[Path]) -> list[Path]:
        """The frame files in playing order: boomerang, then ``loop`` repeats."""
        order = list(frames)
        if self.boomerang and len(order) > 2:
            order += order[-2:0:-1]
        return order * self.loop


@dataclass(frozen=True)
class VideoInfo:
    """What :func:`probe_video` reports about a video's first video stream and its container.

    Args:
        frames: number of frames (packets) in the stream.
        width: frame width in pixels.
        height: frame height in pixels.
        fps: average frame rate, ``frames / duration``.
        duration: the stream's duration in seconds.
        codec: ffmpeg codec name (``h264``).
        pix_fmt: pixel format (``yuv420p``).
        metadata: the container's global tags, including the ones the muxer adds itself
            (``major_brand``, ``minor_version``, ``compatible_brands``, ``encoder``).
    """

    frames: int
    width: int
    height: int
    fps: float
    duration: float
    codec: str
    pix_fmt: str
    metadata: dict[str, str]


def ffmpeg_exe() -> str:
    """The ffmpeg binary to run.

    ``$FFMPEG_BINARY`` if set (a path or a name on ``PATH``), else ``ffmpeg`` on ``PATH``, else the static
    binary shipped in the ``imageio-ffmpeg`` wheel.

    Returns:
        The path of an executable ffmpeg.

    Raises:
        FFmpegError: ``$FFMPEG_BINARY`` is not an executable, or no ffmpeg can be found at all.
    """
    configured = os.environ.get("FFMPEG_BINARY")
    if configured:
        resolved = shutil.which(configured)
        if resolved is None:
            raise FFmpegError(f"FFMPEG_BINARY={configured!r} is not an executable ffmpeg")
        return resolved
    on_path = shutil.which("ffmpeg")
    if on_path is not None:
        return on_path
    try:
        import imageio_ffmpeg

        return str(imageio_ffmpeg.get_ffmpeg_exe())
    except (ImportError, RuntimeError) as e:
        raise FFmpegError(
            "no ffmpeg found: install it (apt-get install ffmpeg), pip install imageio-ffmpeg, "
            "or set FFMPEG_BINARY to an ffmpeg executable"
        ) from e


def assemble_video(
    frames: Sequence[Path],
    out: Path,
    settings: EncodeSettings,
    *,
    metadata: Mapping[str, str] | None = None,
    audio: AudioTrack | None = None,
    container: Container = "mp4",
) -> Path:
    """Encode the given frame files, in order, into a video at ``out``, atomically.

    Frames with an odd width or height are padded to even by repeating the last column/row (see the
    module docstring). ``out`` is written in ``container`` whatever its suffix; its folder is created.
    With ``audio``, the sound starts ``audio.offset`` seconds into its file, is padded with silence if
    it is shorter than the video and cut where the video ends (``-shortest``). A GIF is encoded with a
    palette computed from its own frames (``palettegen``/``paletteuse``), loops forever, has no sound
    and ignores ``codec``, ``crf``, ``preset``, ``pix_fmt`` and ``interpolate_to``.

    Args:
        frames: the frame image files (PNG or anything Pillow reads), in display order; all the same size.
        out: the video file to write; an existing file is replaced only when the encode succeeds.
        settings: codec, quality and frame rate.
        metadata: container tags to write (``{"title": ..., "pytti_manifest": "<json>"}``).
        audio: sound to mux in (MP4: AAC, WebM: Opus; ignored for a GIF).
        container: ``mp4``, ``webm`` or ``gif``.

    Returns:
        ``out``.

    Raises:
        PyttiError: no frames, a frame file missing or unreadable, frames of different sizes, or a
            metadata key that cannot be written.
        OutputError: the destination folder cannot be created or written.
        FFmpegError: ffmpeg failed; the message carries ffmpeg's own last error lines.
    """
    # 1. Check every input before starting ffmpeg.
    paths = [Path(p) for p in frames]
    width, height = _common_frame_size(paths)
    tags = _checked_metadata(metadata or {})
    out = Path(out)
    # 2. Encode into a temporary file beside the destination.
    if audio is not None:
        _existing_file(audio.path, "audio")
    tmp = _temp_file_beside(out, container)
    try:
        size = (width + width % 2, height + height % 2)
        args = _encode_args(tmp, size, settings, tags, _OutputSpec(container, audio, len(paths)))
        _pipe_frames(args, paths, (width, height), out)
        # 3. Make the bytes durable, then move the file into place in one step.
        _fsync(tmp)
        os.replace(tmp, out)
    except OSError as e:
        if e.errno in DISK_FULL_ERRNOS:
            raise disk_full_error(out) from e
        raise
    finally:
        tmp.unlink(missing_ok=True)
    return out


def assemble_outputs(
    frames: Sequence[Path], out: Path, outputs: VideoOutputs, *, metadata: Mapping[str, str] | None = None
) -> list[Path]:
    """Write every video of ``outputs``: ``out`` (MP4), and beside it ``.gif`` / ``.webm`` when asked.

    The encoders are checked first (:func:`check_encoders`), so a missing one fails before any encode.
    Each file is written atomically; the frames are only read, whatever fails.

    Args:
        frames: the run's frame files, in order (an explicit list, never a glob).
        out: the MP4 to write; the other outputs share its stem.
        outputs: what to write.
        metadata: container tags for the MP4 and WebM.

    Returns:
        The files written, the MP4 first.

    Raises:
        FFmpegError: ffmpeg lacks an encoder/filter, or an encode failed (with ffmpeg's own message).
        PyttiError: as :func:`assemble_video`.
    """
    check_encoders(outputs)
    order = outputs.sequence(frames)
    s = outputs.settings
    written = [assemble_video(order, out, s, metadata=metadata, audio=outputs.audio)]
    if outputs.webm:
        webm = replace(s, codec=CODEC_ENCODERS["vp9"], pix_fmt="yuv420p")
        path = out.with_suffix(".webm")
        written.append(
            assemble_video(order, path, webm, metadata=metadata, audio=outputs.audio, container="webm")
        )
    if outputs.gif:
        gif = replace(s, interpolate_to=None)
        written.append(assemble_video(order, out.with_suffix(".gif"), gif, container="gif"))
    return written


def check_encoders(outputs: VideoOutputs) -> None:
    """Fail early, with a clear message, when ffmpeg lacks an encoder, pixel format or filter the outputs need.

    Raises:
        FFmpegError: naming what is missing and the ffmpeg binary that lacks it.
    """
    exe = ffmpeg_exe()
    s = outputs.settings
    need = {s.codec: "output.codec"}
    if outputs.webm:
        need["libvpx-vp9"] = "output.webm"
    if outputs.gif:
        need["gif"] = "output.gif"
    if outputs.audio is not None:
        need["aac"] = "output.audio"
        if outputs.webm:
            need["libopus"] = "output.webm (sound)"
    available = _ffmpeg_list(exe, "-encoders")
    for encoder, key in need.items():
        if encoder not in available:
            raise FFmpegError(
                f"{key}: this ffmpeg ({exe}) has no '{encoder}' encoder; install an ffmpeg that has it "
                "(apt-get install ffmpeg, or pip install imageio-ffmpeg) or point FFMPEG_BINARY at one"
            )
    formats = _pixel_formats(exe, s.codec)
    if formats and s.pix_fmt not in formats:
        raise FFmpegError(
            f"output.pix_fmt: the {s.codec} encoder of {exe} cannot write {s.pix_fmt} "
            f"(it supports {', '.join(formats)})"
        )
    if s.interpolate_to is not None and "minterpolate" not in _ffmpeg_list(exe, "-filters"):
        raise FFmpegError(f"output.interpolate_to: this ffmpeg ({exe}) has no 'minterpolate' filter")


def probe_video(path: Path, *, backend: ProbeBackend = "auto") -> VideoInfo:
    """Describe a video's first video stream and its container metadata.

    Args:
        path: the video file.
        backend: ``"ffprobe"``, ``"ffmpeg"`` (no ffprobe needed), or ``"auto"``: ffprobe when one exists
            beside the ffmpeg binary or on ``PATH``, else ffmpeg. Both give the same results.

    Returns:
        A :class:`VideoInfo`.

    Raises:
        PyttiError: ``path`` does not exist.
        FFmpegError: the file cannot be read as a video, it has no video stream, or ``backend="ffprobe"``
            was asked for and there is no ffprobe.
    """
    path = _existing_file(path, "video")
    exe = ffmpeg_exe()
    ffprobe = _find_ffprobe(exe) if backend != "ffmpeg" else None
    if backend == "ffprobe" and ffprobe is None:
        raise FFmpegError("no ffprobe found beside ffmpeg or on PATH (probe with backend='ffmpeg')")
    if ffprobe is not None:
        return _probe_with_ffprobe(path, ffprobe)
    return _probe_with_ffmpeg(path, exe)


def read_frames(path: Path) -> np.ndarray:
    """Decode every frame of a video's first video stream to RGB, in memory.

    Args:
        path: the video file.

    Returns:
        ``uint8`` array of shape ``(N, H, W, 3)``; ``H, W`` as displayed (ffmpeg applies rotation tags).

    Raises:
        PyttiError: ``path`` does not exist.
        FFmpegError: ffmpeg cannot decode it; the message carries ffmpeg's error lines.
    """
    path = _existing_file(path, "video")
    node = ffmpeg.input(str(path))["v:0"].output("pipe:", format="rawvideo", pix_fmt="rgb24")
    raw, log = _run(
        node.global_args("-hide_banner", "-nostdin", "-nostats"), ffmpeg_exe(), f"decoding {path}"
    )
    text = log.decode("utf-8", errors="replace")
    output_at = text.find("Output #0")
    match = _VIDEO_STREAM_RE.search(text, output_at) if output_at >= 0 else None
    if match is None:
        raise FFmpegError(f"decoding {path}: could not find the decoded frame size in ffmpeg's log")
    width, height = int(match["width"]), int(match["height"])
    if len(raw) % (width * height * 3):
        raise FFmpegError(
            f"decoding {path}: {len(raw)} bytes is not a whole number of {width}x{height} frames"
        )
    return np.frombuffer(raw, dtype=np.uint8).reshape(-1, height, width, 3).copy()  # (N, H, W, 3)


# --- encoding helpers ---------------------------------------------------------------------------------


def _common_frame_size(paths: list[Path]) -> tuple[int, int]:
    """Check that every frame exists and all share one size; return that ``(width, height)``."""
    if not paths:
        raise PyttiError("cannot assemble a video from an empty list of frames")
    first = _image_size(paths[0])
    for path in paths[1:]:
        size = _image_size(path)
        if size != first:
            raise PyttiError(
                f"frame {path} is {size[0]}x{size[1]} but {paths[0]} is {first[0]}x{first[1]}: "
                "all frames of a video must have the same size"
            )
    return first


def _image_size(path: Path) -> tuple[int, int]:
    """``(width, height)`` of an image file, reading only its header."""
    _existing_file(path, "frame")
    try:
        with Image.open(path) as image:
            return image.size
    except (OSError, Image.DecompressionBombError) as e:
        raise PyttiError(f"cannot read frame {path}: {e}") from e


def _load_rgb(path: Path, size: tuple[int, int]) -> np.ndarray:
    """Decode a frame to ``(H, W, 3)`` uint8 RGB, padded to even sides by edge repetition."""
    try:
        with Image.open(path) as image:
            rgb = np.asarray(image.convert("RGB"), dtype=np.uint8)  # (H, W, 3)
    except OSError as e:
        raise PyttiError(f"cannot read frame {path}: {e}") from e
    if (rgb.shape[1], rgb.shape[0]) != size:
        raise PyttiError(f"frame {path} changed size while the video was being encoded")
    height, width = rgb.shape[:2]
    return np.pad(rgb, ((0, height % 2), (0, width % 2), (0, 0)), mode="edge")  # (H', W', 3), even sides


def _checked_metadata(metadata: Mapping[str, str]) -> dict[str, str]:
    """Return the tags as a plain dict, rejecting keys and values ffmpeg's ``-metadata`` cannot carry."""
    tags = {str(k): str(v) for k, v in metadata.items()}
    for key, value in tags.items():
        if not key or any(c in key for c in "=\n\r\0"):
            raise PyttiError(f"metadata key {key!r} must be non-empty and contain no '=', newline or NUL")
        if "\0" in value:
            raise PyttiError(f"metadata value for {key!r} contains a NUL character")
    return tags


def _temp_file_beside(out: Path, container: Container = "mp4") -> Path:
    """Create an empty hidden temporary file in ``out``'s folder (creating the folder)."""
    try:
        fd, tmp = create_temp_beside(out.with_name(out.stem), suffix=f".part.{container}")
    except OSError as e:
        raise OutputError(f"cannot write the video into {out.parent}: {e}") from e
    os.close(fd)
    return tmp


@dataclass(frozen=True)
class _OutputSpec:
    """What one encode writes besides the pixels: its container, sound and length in frames."""

    container: Container
    audio: AudioTrack | None
    frames: int


def _encode_args(
    tmp: Path, size: tuple[int, int], settings: EncodeSettings, tags: dict[str, str], spec: _OutputSpec
) -> list[str]:
    """The ffmpeg argv that reads raw RGB frames from stdin (and maybe a sound file) and writes ``tmp``."""
    rate = Fraction(settings.fps).limit_denominator(1001)
    args = [ffmpeg_exe(), "-hide_banner", "-nostats", "-loglevel", "error", "-y"]
    args += ["-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{size[0]}x{size[1]}", "-framerate", str(rate)]
    args += ["-i", "pipe:"]
    if spec.container == "gif":
        palette = "split[a][b];[a]palettegen=stats_mode=diff[p];[b][p]paletteuse=dither=bayer:bayer_scale=5"
        return [*args, "-filter_complex", f"[0:v]{palette}", "-loop", "0", "-f", "gif", str(tmp)]
    audio = spec.audio
    if audio is not None:
        args += ["-ss", f"{audio.offset:.6f}", "-i", str(audio.path), "-map", "0:v:0", "-map", "1:a:0"]
    if settings.interpolate_to is not None:
        target = Fraction(settings.interpolate_to).limit_denominator(1001)
        # minterpolate stops at the last input frame: hold that frame one more frame so N frames last N/fps
        motion = f"minterpolate=fps={target}:mi_mode=mci:mc_mode=aobmc:me_mode=bidir:vsbmc=1"
        args += ["-vf", f"tpad=stop_mode=clone:stop=1,{motion}"]
    args += ["-c:v", settings.codec, "-pix_fmt", settings.pix_fmt, *_quality_args(settings)]
    if audio is not None:
        sound = (
            ["-c:a", "libopus", "-b:a", "128k"]
            if spec.container == "webm"
            else ["-c:a", "aac", "-b:a", "192k"]
        )
        # 48 kHz: what Opus wants, and short AAC frames (a low-rate source would cut at 128 ms steps).
        # Pad a short track with silence, then stop at the video's end: the video's length always wins.
        args += [*sound, "-ar", "48000", "-af", "apad", "-shortest", "-t", f"{spec.frames / float(rate):.6f}"]
    if spec.container == "mp4":
        movflags = "+faststart" + ("+use_metadata_tags" if set(tags) - _ITUNES_KEYS else "")
        args += ["-movflags", movflags]
    for i, (key, value) in enumerate(tags.items()):
        args += [f"-metadata:g:{i}", f"{key}={value}"]
    return [*args, "-f", spec.container, str(tmp)]


def _quality_args(settings: EncodeSettings) -> list[str]:
    """Encoder-specific rate control: constant quality at ``crf``, speed from ``preset``."""
    if settings.codec == "libvpx-vp9":
        speed = _VP9_CPU_USED.get(settings.preset, 2)
        return [
            "-crf",
            str(settings.crf),
            "-b:v",
            "0",
            "-deadline",
            "good",
            "-cpu-used",
            str(speed),
            "-row-mt",
            "1",
        ]
    args = ["-crf", str(settings.crf), "-preset", settings.preset]
    if settings.codec == "libx265":
        args += ["-tag:v", "hvc1", "-x265-params", "log-level=error"]  # hvc1: QuickTime/Safari play it
    return args


def _ffmpeg_list(exe: str, flag: str) -> set[str]:
    """Names in ``ffmpeg -encoders`` / ``-filters`` output (the second column of each entry)."""
    try:
        proc = subprocess.run([exe, "-hide_banner", flag], capture_output=True, check=False, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise FFmpegError(f"cannot run ffmpeg ({exe}): {e}") from e
    names = set()
    for line in proc.stdout.decode("utf-8", errors="replace").splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] != "=" and not parts[0].startswith("-"):
            names.add(parts[1])
    return names


def _pixel_formats(exe: str, encoder: str) -> list[str]:
    """The pixel formats ``ffmpeg -h encoder=NAME`` lists (empty when it does not say)."""
    try:
        proc = subprocess.run(
            [exe, "-hide_banner", "-h", f"encoder={encoder}"], capture_output=True, check=False, timeout=60
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        raise FFmpegError(f"cannot run ffmpeg ({exe}): {e}") from e
    for line in proc.stdout.decode("utf-8", errors="replace").splitlines():
        if "Supported pixel formats:" in line:
            return line.split(":", 1)[1].split()
    return []


def _pipe_frames(args: list[str], paths: list[Path], size: tuple[int, int], out: Path) -> None:
    """Run the encoder, writing each frame to its stdin; raise FFmpegError with its log if it fails."""
    with tempfile.TemporaryFile() as log:  # a file, not a pipe: a chatty ffmpeg can never block on it
        proc = _start(args, log)
        assert proc.stdin is not None  # started with stdin=PIPE
        try:
            for path in paths:
                proc.stdin.write(_load_rgb(path, size).tobytes())
        except BrokenPipeError:
            pass  # ffmpeg exited early; its exit status and log below say why
        except BaseException:
            proc.kill()
            raise
        finally:
            with contextlib.suppress(BrokenPipeError):
                proc.stdin.close()
            proc.wait()
        if proc.returncode != 0:
            log.seek(0)
            text = log.read()
            if b"No space left on device" in text or b"Disk quota exceeded" in text:
                raise disk_full_error(out)
            raise FFmpegError(
                f"ffmpeg failed (exit {proc.returncode}) encoding {out.name}: {_error_tail(text)}"
            )


def _start(args: list[str], log: IO[bytes]) -> subprocess.Popen[bytes]:
    """Start ffmpeg with a stdin pipe and its stderr going to ``log``."""
    try:
        return subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=log)
    except OSError as e:
        raise FFmpegError(f"cannot run ffmpeg ({args[0]}): {e}") from e


def _fsync(path: Path) -> None:
    """Flush a file's bytes to disk."""
    with path.open("rb") as handle:
        os.fsync(handle.fileno())


# --- probing helpers ----------------------------------------------------------------------------------


def _find_ffprobe(exe: str) -> str | None:
    """An ffprobe beside the ffmpeg binary, else on ``PATH``, else ``None``."""
    sibling = Path(exe).with_name("ffprobe" + Path(exe).suffix)
    if sibling.is_file() and os.access(sibling, os.X_OK):
        return str(sibling)
    return shutil.which("ffprobe")


def _probe_with_ffprobe(path: Path, ffprobe: str) -> VideoInfo:
    """:func:`probe_video` through ``ffprobe -count_packets``."""
    try:
        data = ffmpeg.probe(str(path), cmd=ffprobe, count_packets=None, select_streams="v:0")
    except ffmpeg.Error as e:
        raise FFmpegError(f"ffprobe cannot read {path}: {_error_tail(e.stderr)}") from e
    except OSError as e:
        raise FFmpegError(f"cannot run ffprobe ({ffprobe}): {e}") from e
    if not data.get("streams"):
        raise FFmpegError(f"{path} has no video stream")
    stream = data["streams"][0]
    frames = int(stream.get("nb_read_packets", 0))
    if "duration_ts" in stream:
        duration = int(stream["duration_ts"]) * Fraction(stream["time_base"])
    else:
        duration = Fraction(stream.get("duration") or data.get("format", {}).get("duration") or 0)
    tags = {str(k): str(v) for k, v in data.get("format", {}).get("tags", {}).items()}
    return _video_info(frames, duration, stream, tags)


def _probe_with_ffmpeg(path: Path, exe: str) -> VideoInfo:
    """:func:`probe_video` without ffprobe: a ``framecrc`` stream copy plus an ``ffmetadata`` dump."""
    node = ffmpeg.input(str(path))["v:0"].output("pipe:", format="framecrc", c="copy")
    packets, log = _run(node.global_args("-hide_banner", "-nostdin", "-nostats"), exe, f"probing {path}")
    text = log.decode("utf-8", errors="replace")
    input_part = text.split("Stream mapping:", 1)[0]
    match = _VIDEO_STREAM_RE.search(input_part)
    if match is None:
        raise FFmpegError(f"{path} has no video stream")
    frames, duration = _count_packets(packets.decode("utf-8", errors="replace"))
    stream = {
        "codec_name": match["codec"],
        "pix_fmt": match["pix_fmt"],
        "width": match["width"],
        "height": match["height"],
    }
    return _video_info(frames, duration, stream, _container_tags(path, exe, input_part))


def _video_info(
    frames: int, duration: Fraction, stream: Mapping[str, Any], tags: dict[str, str]
) -> VideoInfo:
    """Build a VideoInfo; fps is ``frames / duration`` whichever backend measured them."""
    fps = frames / duration if duration > 0 else Fraction(0)
    return VideoInfo(
        frames=frames,
        width=int(stream["width"]),
        height=int(stream["height"]),
        fps=float(fps),
        duration=float(duration),
        codec=str(stream["codec_name"]),
        pix_fmt=str(stream.get("pix_fmt", "")),
        metadata=tags,
    )


def _count_packets(framecrc: str) -> tuple[int, Fraction]:
    """Packet count and summed duration (seconds) from ``framecrc`` output of one stream."""
    time_base = Fraction(0)
    frames = 0
    ticks = 0
    for line in framecrc.splitlines():
        if line.startswith("#tb 0:"):
            time_base = Fraction(line.split(":", 1)[1].strip())
        elif line and not line.startswith("#"):
            frames += 1
            ticks += int(line.split(",")[3])  # stream, dts, pts, duration, size, crc
    return frames, ticks * time_base


def _container_tags(path: Path, exe: str, input_log: str) -> dict[str, str]:
    """Global tags: ffmetadata's full values over the log's (which ffmpeg cuts at 255 characters a line).

    The ffmetadata muxer leaves out ``encoder`` (with ``+bitexact``) and ``creation_time``, so those come
    from the log of the input.
    """
    node = ffmpeg.input(str(path)).output("pipe:", format="ffmetadata", fflags="+bitexact")
    dump, _ = _run(
        node.global_args("-hide_banner", "-nostdin", "-loglevel", "error"), exe, f"reading tags of {path}"
    )
    return _parse_log_metadata(input_log) | _parse_ffmetadata(dump.decode("utf-8", errors="replace"))


def _parse_log_metadata(log: str) -> dict[str, str]:
    """The ``Metadata:`` block directly under ``Input #0`` in ffmpeg's log."""
    lines = log.replace("\r", "").split("\n")
    starts = [i for i, line in enumerate(lines) if line.startswith("Input #0")]
    if not starts or starts[0] + 1 >= len(lines) or lines[starts[0] + 1] != "  Metadata:":
        return {}
    tags: dict[str, str] = {}
    last = ""
    for line in lines[starts[0] + 2 :]:
        key, sep, value = line[4:].partition(": ")
        if not line.startswith("    ") or not sep:
            break
        if key.strip():
            last = key.strip()
            tags[last] = value
        elif last:
            tags[last] += "\n" + value  # a continuation line of a multi-line value
    return tags


def _parse_ffmetadata(text: str) -> dict[str, str]:
    """Global ``key=value`` entries of an ``;FFMETADATA1`` file (``\\`` escapes ``= ; # \\`` and newline)."""
    tags: dict[str, str] = {}
    key: str | None = None
    chars: list[str] = []
    line_start, skip = True, False
    for match in _FFMETADATA_TOKEN_RE.finditer(text + "\n"):
        escaped, equals, newline, plain = match.groups()
        if newline is not None:
            if key is not None and not skip:
                tags[key] = "".join(chars)
            key, chars, line_start, skip = None, [], True, False
            continue
        if line_start and plain is not None and plain[0] == "[":
            break  # [STREAM] / [CHAPTER] sections follow the global tags
        skip = skip or (line_start and plain is not None and plain[0] in ";#")
        line_start = False
        if equals is not None and key is None:
            key, chars = "".join(chars), []
        else:
            chars.append(escaped if escaped is not None else (equals or plain))
    return tags


# --- shared helpers -----------------------------------------------------------------------------------


def _existing_file(path: Path, what: str) -> Path:
    """``path`` as a Path, or a PyttiError naming it if it is not a file."""
    path = Path(path)
    if not path.is_file():
        raise PyttiError(f"{what} file not found: {path}")
    return path


def _run(node: Any, exe: str, what: str) -> tuple[bytes, bytes]:
    """Run an ffmpeg-python node with the ffmpeg binary ``exe``; return ``(stdout, stderr)``."""
    try:
        stdout, stderr = node.run(cmd=exe, capture_stdout=True, capture_stderr=True)
    except ffmpeg.Error as e:
        raise FFmpegError(f"ffmpeg failed {what}: {_error_tail(e.stderr)}") from e
    except OSError as e:
        raise FFmpegError(f"cannot run ffmpeg ({exe}): {e}") from e
    return bytes(stdout), bytes(stderr)


def _error_tail(stderr: bytes | None) -> str:
    """ffmpeg's own error lines: its whole log if short, else its first and last few lines."""
    text = (stderr or b"").decode("utf-8", errors="replace").replace("\r", "\n")
    lines = [line.strip() for line in text.split("\n") if line.strip()]
    if len(lines) > _ERROR_HEAD_LINES + _ERROR_TAIL_LINES:  # the first error is often the cause
        lines = [*lines[:_ERROR_HEAD_LINES], "...", *lines[-_ERROR_TAIL_LINES:]]
    return "\n".join(lines) or "(ffmpeg printed nothing)"
