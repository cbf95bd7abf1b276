"""Audio reactivity: per-frame band-pass envelopes of a sound file, for scene expressions.

A scene names band-pass filters (``input_audio_filters: [{name: fLo, f_center: 105, f_width: 65}]``);
every expression may then read ``fLo`` (this frame's value) and ``fLo_prev`` (the previous frame's).

Definitions (PyTTI's ``SpectralAudioParser``, with its ``_prev`` bug fixed):

- The file is decoded by ffmpeg to mono float samples at its own sample rate (no resampling, so the
  Nyquist frequency is the file's).
- Each filter is a Butterworth band-pass of ``order`` from ``f_center - f_width/2`` to
  ``f_center + f_width/2`` (second-order sections), run once over the whole track, causally: nothing
  before a sound starts can light a band.
- Frame ``k`` (0-based, ``t = k / fps``) reads the audio window
  ``[offset + k/fps, offset + (k+1)/fps)``; its raw value is the root mean square of the filtered
  signal in that window (PyTTI takes the peak; the RMS ignores the filter's ringing at an onset).
- Values are normalized per band to ``[0, 1]`` by the band's largest raw value over the whole track
  (from ``offset`` on). A band whose largest value is more than :data:`NOISE_FLOOR_DB` below the
  loudest band's is divided by that floor instead, so a band that is silent in practice (filter
  leakage, a click) stays near 0 rather than being blown up to 1.
- ``<name>_prev`` at frame ``k`` is the value at frame ``k - 1``; at frame 0 it is the value of the
  window one frame before ``offset`` (0 before the start of the file). Frames after the end of the
  track read 0.

Decoding and probing go through :func:`pytti_engine.video.ffmpeg_exe` (no ffprobe needed). The
analysis is deterministic; :func:`load_or_analyze` caches it on disk under a key made of the audio
file's bytes and every analysis parameter, so one analysis serves the whole render.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pytti_engine.atomic import atomic_write_text
from pytti_engine.errors import FFmpegError, PyttiError

#: A band quieter than the loudest band by more than this many decibels is normalized against the floor.
NOISE_FLOOR_DB = 40.0
#: Bump when the analysis changes, so cached results are not reused.
ANALYSIS_VERSION = 1

_AUDIO_STREAM_RE = re.compile(
    r"Stream #\d+:\d+\S*: Audio: (?P<codec>[^\s,]+)[^,\n]*, (?P<rate>\d+) Hz, (?P<layout>[^,\n]+)"
)
_DURATION_RE = re.compile(r"Duration: (?P<h>\d+):(?P<m>\d+):(?P<s>\d+(?:\.\d+)?)")


@dataclass(frozen=True)
class BandFilter:
    """One band-pass filter whose envelope becomes the expression variable ``name``.

    Args:
        name: the variable name (``name_prev`` is defined too).
        f_center: centre frequency in Hz.
        f_width: band width in Hz (the band is ``f_center ± f_width / 2``).
        order: Butterworth order.
    """

    name: str
    f_center: float
    f_width: float
    order: int = 5

    @property
    def low(self) -> float:
        """Lower edge of the band in Hz."""
        return self.f_center - self.f_width / 2

    @property
    def high(self) -> float:
        """Upper edge of the band in Hz."""
        return self.f_center + self.f_width / 2


@dataclass(frozen=True)
class AudioInfo:
    """What :func:`probe_audio` reports about a file's first audio stream.

    Args:
        sample_rate: samples per second.
        codec: ffmpeg codec name (``pcm_s16le``, ``mp3``, ...).
        duration: the container's duration in seconds (``None`` when ffmpeg does not know it).
    """

    sample_rate: int
    codec: str
    duration: float | None

    @property
    def nyquist(self) -> float:
        """Half the sample rate: the highest frequency the file can hold."""
        return self.sample_rate / 2


@dataclass(frozen=True)
class AudioSpec:
    """The audio input of a scene.

    Args:
        path: the sound file.
        offset: seconds into the file at which ``t = 0``.
        filters: the bands to follow.
    """

    path: Path
    offset: float
    filters: tuple[BandFilter, ...]


@dataclass(frozen=True)
class AudioBands:
    """Per-frame band values of a track: what expressions read.

    Args:
        names: the filter names, in scene order.
        fps: frames per second the values were sampled at.
        series: one tuple per band; ``series[b][k + 1]`` is band ``b`` at frame ``k`` and
            ``series[b][0]`` is the window before frame 0 (frame 0's ``_prev``).
    """

    names: tuple[str, ...]
    fps: float
    series: tuple[tuple[float, ...], ...]

    @property
    def frames(self) -> int:
        """Number of frames covered by the track (later frames read 0)."""
        return len(self.series[0]) - 1 if self.series else 0

    def value(self, name: str, frame: int) -> float:
        """Band ``name`` at 0-based ``frame`` (0 outside the track)."""
        series = self.series[self.names.index(name)]
        return series[frame + 1] if -1 <= frame < len(series) - 1 else 0.0

    def at(self, frame: int) -> dict[str, float]:
        """The expression variables of 0-based ``frame``: each ``name`` and ``name_prev``."""
        env: dict[str, float] = {}
        for name in self.names:
            env[name] = self.value(name, frame)
            env[f"{name}_prev"] = self.value(name, frame - 1)
        return env

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the cache file's content)."""
        return {"names": list(self.names), "fps": self.fps, "series": [list(s) for s in self.series]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AudioBands:
        """Inverse of :meth:`to_dict`."""
        return cls(
            names=tuple(str(n) for n in data["names"]),
            fps=float(data["fps"]),
            series=tuple(tuple(float(v) for v in s) for s in data["series"]),
        )


def band_variable_names(names: Iterable[str]) -> list[str]:
    """Every expression variable the bands define: each name and ``name_prev``."""
    return [v for name in names for v in (name, f"{name}_prev")]


def probe_audio(path: Path) -> AudioInfo:
    """Describe a file's first audio stream with ffmpeg alone (no ffprobe).

    Args:
        path: the sound file (any container ffmpeg reads: wav, mp3, flac, ogg, m4a, a video ...).

    Returns:
        An :class:`AudioInfo`.

    Raises:
        PyttiError: the file does not exist, ffmpeg cannot read it (ffmpeg's message is included), or it
            has no audio stream.
    """
    from pytti_engine.video import ffmpeg_exe

    path = Path(path)
    if not path.is_file():
        raise PyttiError(f"audio file not found: {path}")
    args = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path)]
    try:
        proc = subprocess.run(args, capture_output=True, check=False, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise FFmpegError(f"cannot run ffmpeg ({args[0]}) on {path}: {e}") from e
    log = proc.stderr.decode("utf-8", errors="replace")
    match = _AUDIO_STREAM_RE.search(log)
    if match is None:
        if "Input #0" not in log:
            raise PyttiError(f"{path} is not an audio file ffmpeg can read: {_last_line(log)}")
        raise PyttiError(f"{path} has no audio stream")
    duration = _DURATION_RE.search(log)
    seconds = int(duration["h"]) * 3600 + int(duration["m"]) * 60 + float(duration["s"]) if duration else None
    return AudioInfo(sample_rate=int(match["rate"]), codec=match["codec"], duration=seconds)


def decode_audio(path: Path) -> tuple[np.ndarray, int]:
    """Decode a file's first audio stream to mono float32 at its own sample rate.

    Args:
        path: the sound file.

    Returns:
        ``(samples, sample_rate)``; ``samples`` has shape ``(N,)``, values in about ``[-1, 1]``.

    Raises:
        PyttiError: as :func:`probe_audio`.
        FFmpegError: decoding failed; the message carries ffmpeg's error lines.
    """
    from pytti_engine.video import ffmpeg_exe

    info = probe_audio(path)
    args = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-i", str(path)]
    args += ["-map", "0:a:0", "-ac", "1", "-ar", str(info.sample_rate), "-f", "f32le", "-"]
    try:
        proc = subprocess.run(args, capture_output=True, check=False)
    except OSError as e:
        raise FFmpegError(f"cannot run ffmpeg ({args[0]}): {e}") from e
    if proc.returncode != 0:
        raise FFmpegError(
            f"ffmpeg failed decoding {path}: {_last_line(proc.stderr.decode(errors='replace'))}"
        )
    samples = np.frombuffer(proc.stdout, dtype="<f4").astype(np.float32)
    return samples, info.sample_rate


def check_filters(filters: Sequence[BandFilter], sample_rate: int) -> None:
    """Refuse bands a file of ``sample_rate`` cannot hold.

    Raises:
        PyttiError: a centre or upper edge at or above the Nyquist frequency, or a lower edge at or below 0.
    """
    nyquist = sample_rate / 2
    for f in filters:
        if f.f_center >= nyquist:
            raise PyttiError(
                f"filter '{f.name}': f_center {f.f_center:g} Hz is above the Nyquist frequency "
                f"({nyquist:g} Hz for a {sample_rate} Hz file)"
            )
        if f.high >= nyquist:
            raise PyttiError(
                f"filter '{f.name}': the band {f.low:g}-{f.high:g} Hz reaches the Nyquist frequency "
                f"({nyquist:g} Hz for a {sample_rate} Hz file); make f_width smaller"
            )
        if f.low <= 0:
            raise PyttiError(f"filter '{f.name}': the band's lower edge {f.low:g} Hz must be above 0")


def band_envelopes(
    samples: np.ndarray, sample_rate: int, filters: Sequence[BandFilter], fps: float, offset: float = 0.0
) -> AudioBands:
    """Per-frame normalized band-pass envelopes of a signal (see the module docstring).

    Args:
        samples: ``(N,)`` mono samples.
        sample_rate: samples per second.
        filters: the bands.
        fps: frames per second.
        offset: seconds into ``samples`` at which frame 0 starts (may be negative).

    Returns:
        :class:`AudioBands` covering every frame that starts before the end of the signal.

    Raises:
        PyttiError: a band the sample rate cannot hold, or ``fps`` not positive.

    Example:
        >>> rate = 8000
        >>> tone = np.sin(2 * np.pi * 440 * np.arange(rate) / rate).astype(np.float32)
        >>> bands = band_envelopes(tone, rate, [BandFilter("a4", 440, 80)], fps=10)
        >>> bands.frames, round(bands.value("a4", 5), 2)
        (10, 1.0)
    """
    try:
        from scipy import signal
    except ImportError as e:
        raise PyttiError("audio filters need scipy: pip install 'pytti-flow[audio]'") from e
    if not (math.isfinite(fps) and fps > 0):
        raise PyttiError(f"fps must be a positive number, got {fps!r}")
    check_filters(filters, sample_rate)
    x = np.asarray(samples, dtype=np.float64).reshape(-1)
    frames = max(0, math.ceil((x.size / sample_rate - offset) * fps - 1e-9))
    # window k (k = -1 .. frames-1) starts at sample round((offset + k/fps) * rate); column 0 is k = -1
    edges = np.round((offset + np.arange(-1, frames + 1) / fps) * sample_rate).astype(np.int64)
    edges = np.clip(edges, 0, x.size)
    raw = np.zeros((len(filters), frames + 1))
    for b, f in enumerate(filters):
        sos = signal.butter(f.order, [f.low, f.high], btype="bandpass", fs=sample_rate, output="sos")
        raw[b] = _window_rms(signal.sosfilt(sos, x), edges)
    if frames == 0:  # the offset is at or past the end of the signal: nothing to follow
        raw[:] = 0.0
    peaks = raw[:, 1:].max(axis=1) if frames else np.zeros(len(filters))  # (B,) over the track
    floor = max(float(peaks.max(initial=0.0)) * 10 ** (-NOISE_FLOOR_DB / 20), 1e-9)
    scale = np.maximum(peaks, floor)[:, None]
    values = np.clip(raw / scale, 0.0, 1.0)  # (B, frames + 1)
    series = tuple(tuple(float(v) for v in row) for row in values)
    return AudioBands(names=tuple(f.name for f in filters), fps=float(fps), series=series)


def analyze_audio(spec: AudioSpec, fps: float) -> AudioBands:
    """Decode ``spec.path`` and compute its band envelopes at ``fps``.

    Raises:
        PyttiError: as :func:`decode_audio` and :func:`band_envelopes`.
    """
    samples, rate = decode_audio(spec.path)
    return band_envelopes(samples, rate, spec.filters, fps, spec.offset)


def analysis_key(spec: AudioSpec, fps: float) -> str:
    """A hex key naming one analysis: the audio file's bytes plus every parameter that changes the result."""
    digest = hashlib.sha256()
    with Path(spec.path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    params = {
        "version": ANALYSIS_VERSION,
        "floor_db": NOISE_FLOOR_DB,
        "fps": float(fps),
        "offset": float(spec.offset),
        "filters": [[f.name, f.f_center, f.f_width, f.order] for f in spec.filters],
    }
    digest.update(json.dumps(params, sort_keys=True).encode())
    return digest.hexdigest()


def default_cache_dir() -> Path:
    """Where analyses are cached: ``$PYTTI_CACHE_DIR/audio``, else ``$XDG_CACHE_HOME/pytti-flow/audio``."""
    configured = os.environ.get("PYTTI_CACHE_DIR")
    if configured:
        return Path(configured) / "audio"
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "pytti-flow" / "audio"


@dataclass(frozen=True)
class CachedBands:
    """An analysis with where it is cached and whether it was already there."""

    bands: AudioBands
    path: Path
    key: str
    reused: bool


def load_or_analyze(spec: AudioSpec, fps: float, cache_dir: Path | None = None) -> CachedBands:
    """The band envelopes of ``spec`` at ``fps``, from the cache when an identical analysis exists.

    Args:
        spec: the audio input.
        fps: frames per second.
        cache_dir: the cache folder (default :func:`default_cache_dir`); created if needed.

    Returns:
        The bands, their cache file and whether it was reused.

    Raises:
        PyttiError: as :func:`analyze_audio`.
    """
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    key = analysis_key(spec, fps)
    path = folder / f"{key}.json"
    if path.is_file():
        try:
            return CachedBands(AudioBands.from_dict(json.loads(path.read_text())), path, key, reused=True)
        except (OSError, ValueError, KeyError, TypeError):
            pass  # an unreadable cache entry is recomputed and replaced below
    bands = analyze_audio(spec, fps)
    try:
        atomic_write_text(path, json.dumps(bands.to_dict()))
    except OSError:
        pass  # a read-only cache only costs a re-analysis next time
    return CachedBands(bands, path, key, reused=False)


def audio_spec(scene: Any) -> AudioSpec | None:
    """The audio input of a validated ``Scene`` (``None`` when it has no ``input_audio``)."""
    if getattr(scene, "input_audio", None) is None:
        return None
    filters = tuple(
        BandFilter(name=f.name, f_center=f.f_center, f_width=f.f_width, order=f.order)
        for f in scene.input_audio_filters
    )
    return AudioSpec(path=Path(scene.input_audio), offset=float(scene.input_audio_offset), filters=filters)


def scene_bands(scene: Any, cache_dir: Path | None = None) -> AudioBands | None:
    """The bands of a scene's ``input_audio`` at its fps, through the cache (``None`` without audio)."""
    spec = audio_spec(scene)
    if spec is None or not spec.filters:
        return None
    return load_or_analyze(spec, float(scene.fps), cache_dir).bands


def _window_rms(filtered: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Root mean square of ``filtered`` in each window ``[edges[i], edges[i+1])``; 0 for an empty window."""
    energy = np.concatenate([[0.0], np.cumsum(filtered * filtered)])  # (N + 1,)
    lo, hi = edges[:-1], edges[1:]
    counts = hi - lo
    sums = np.maximum(energy[hi] - energy[lo], 0.0)  # cumsum rounding can dip below 0
    return np.where(counts > 0, np.sqrt(sums / np.maximum(counts, 1)), 0.0)


def _last_line(log: str) -> str:
    lines = [line.strip() for line in log.replace("\r", "\n").split("\n") if line.strip()]
    return lines[-1] if lines else "(ffmpeg printed nothing)"
