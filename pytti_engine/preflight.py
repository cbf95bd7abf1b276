"""Preflight: every check a render can make before Prefect starts or a model loads, in one function.

``pytti validate``, ``pytti render``/``resume``/``demo``/``fork``, ``pytti batch`` (every scene,
before any starts) and the render flow's parameters (the UI's runs) all call :func:`preflight` on a
validated scene and its plan, so a scene that passes ``validate`` renders, and one that cannot render
fails up front with one line per problem (the CLI exits 2). It checks what the scene schema cannot:

- perceptors: the model name against open_clip's registry, the pretrained tag against the model's
  tags and its weights (in the Hugging Face cache, or a hub that answers), a weights file or
  ``local-dir:`` folder that exists (:func:`pytti_engine.perceptors.check_perceptor`; no weights
  are loaded or hashed);
- inputs: image prompts, image and video masks the engine can read (local files; an http(s) URL
  must at least be a well-formed URL), the VQGAN's files, ffmpeg's encoders for the outputs;
- values: the cutouts of one step must fit in memory (at least ``cutouts x 3 x S^2 x 4`` bytes
  for a perceptor of input side ``S``), the video's frame rate must be one ffmpeg can write;
- the device, when one is given (``cuda`` or ``mps`` on a machine without it).

Nothing here imports prefect, and torch only when :func:`preflight` runs; nothing is written.
"""

from __future__ import annotations

import os
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pytti_engine.errors import PyttiError
from pytti_engine.inputs import is_url

if TYPE_CHECKING:
    from pytti_engine.perceptors import PerceptorCheck
    from pytti_engine.vqgan_files import VQGANFiles

MIN_VIDEO_FPS = 0.001
"""The lowest frame rate the video encode takes (one frame every 1000 s): ffmpeg gets the rate as a
fraction with a denominator of at most 1001, and a smaller rate rounds to 0 there."""
FLOAT_BYTES = 4
"""Cutouts are float32 images (mixed precision casts them later, inside the perceptor)."""


class PreflightError(PyttiError):
    """A scene that cannot render here: ``problems`` has one self-contained line per problem."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


@dataclass(frozen=True)
class PreflightReport:
    """What a render will use, as ``validate`` prints it.

    Args:
        perceptors: what each perceptor entry loads (name, input size, activation and why).
        vqgan: the VQGAN's files for a ``vqgan`` scene, else ``None``.
        notes: the scene's own notes (what it adjusted, e.g. a size rounded for the VQGAN).
        warnings: lines to show once (e.g. a local weights file whose activation is a guess).
    """

    perceptors: tuple[PerceptorCheck, ...]
    vqgan: VQGANFiles | None = None
    notes: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()

    def lines(self) -> list[str]:
        """One ``perceptors.N: NAME, SIZE px, ACTIVATION`` line per perceptor."""
        return [
            f"perceptors.{i}: {p.name}, {p.input_size} px, {p.activation}"
            for i, p in enumerate(self.perceptors)
        ]


def preflight(
    scene: Any,
    plan: Any,
    *,
    name: str = "scene",
    device: str | None = None,
    memory_bytes: int | None = None,
) -> PreflightReport:
    """Check that a validated scene can render on this machine, before anything starts.

    Args:
        scene: the validated :class:`~pytti_engine.scene.Scene`.
        plan: its :class:`~pytti_engine.scene.Plan`.
        name: how the scene is named in messages (its file).
        device: the device the render asks for (``auto``, ``cpu``, ``cuda:1``, ``mps``); ``None``
            (``validate``) checks no device and measures memory against the largest one here.
        memory_bytes: the memory the cutouts may use (default: the device's, see :func:`memory_limit`).

    Returns:
        What the render will use (perceptors and their activations, warnings to show).

    Raises:
        PreflightError: one line per problem, each naming ``name`` and the scene key.
    """
    from pytti_engine.perceptors import check_perceptor  # open_clip's registry: imports torch
    from pytti_engine.vqgan_files import check_image_model

    problems: list[str] = []
    perceptors: list[PerceptorCheck] = []
    for i, spec in enumerate(scene.perceptors):
        try:
            perceptors.append(check_perceptor(spec.model, spec.pretrained, spec.quick_gelu))
        except PyttiError as e:
            problems.append(f"{name}: perceptors.{i}: {e}")
    vqgan = None
    try:
        vqgan = check_image_model(scene)
    except PyttiError as e:
        problems.append(f"{name}: {e}")
    problems += [f"{name}: {p}" for p in _input_problems(scene, plan)]
    torch_device = None
    if device is not None:
        from pytti_engine.devices import resolve_device

        try:
            torch_device = resolve_device(device)
        except PyttiError as e:
            problems.append(str(e))
    if perceptors and (device is None or torch_device is not None):
        limit = memory_bytes if memory_bytes is not None else memory_limit(torch_device)
        problems += [f"{name}: {p}" for p in _memory_problems(scene, perceptors, limit, torch_device)]
    problems += [f"{name}: {p}" for p in _video_problems(scene)]
    if problems:
        raise PreflightError(problems)
    return PreflightReport(
        perceptors=tuple(perceptors),
        vqgan=vqgan,
        notes=tuple(scene.notes),
        warnings=tuple(p.warning for p in perceptors if p.warning),
    )


# ----------------------------------------------------------------------------------------------------
# Inputs.


def url_problem(value: str) -> str | None:
    """Why ``value`` is not a well-formed http(s) URL, or ``None`` (no request is made)."""
    try:
        parts = urllib.parse.urlsplit(value)
        port = parts.port  # a malformed port raises here
    except ValueError as e:
        return f"malformed URL {value!r} ({e})"
    if parts.scheme not in ("http", "https"):
        return f"{value!r} is not an http(s) URL"
    if not parts.hostname or any(c.isspace() for c in value):
        return f"malformed URL {value!r} (it needs a host and no spaces)"
    del port
    return None


def _picture_sources(plan: Any) -> Iterator[tuple[str, str, int, str]]:
    """``(what, source, frame, prompt)`` for every image prompt and image/video mask of the plan."""
    seen: set[tuple[str, str]] = set()
    for frame in plan.frames:
        for prompt in frame.prompts:
            items = []
            if prompt.image is not None:
                items.append(("image prompt", str(prompt.image)))
            if prompt.mask is not None and prompt.mask.kind in ("image", "video"):
                items.append((f"{prompt.mask.kind} mask", str(prompt.mask.value)))
            for what, source in items:
                if (what, source) not in seen:
                    seen.add((what, source))
                    yield what, source, frame.index, prompt.text


def _input_problems(scene: Any, plan: Any) -> list[str]:
    """Malformed URLs, then what the engine refuses to read (missing pictures, ffmpeg's encoders)."""
    problems = [
        f"frame {frame}: prompt {prompt!r}: {what}: {problem}"
        for what, source, frame, prompt in _picture_sources(plan)
        if is_url(source) and (problem := url_problem(source))
    ]
    if problems:
        return problems
    from pytti_engine.job import check_renderable
    from pytti_engine.video import VideoOutputs, check_encoders

    try:
        check_renderable(plan)
    except PyttiError as e:
        problems.append(str(e))
    try:
        check_encoders(VideoOutputs.from_scene(scene))
    except PyttiError as e:
        problems.append(str(e))
    return problems


# ----------------------------------------------------------------------------------------------------
# Values.


def cutout_bytes(cutouts: int, input_size: int) -> int:
    """The bytes of one batch of float32 cutouts, ``(cutouts, 3, S, S)``: a lower bound of a step's
    memory for a perceptor of input side ``S`` (its activations come on top)."""
    return cutouts * 3 * input_size * input_size * FLOAT_BYTES


def memory_limit(device: Any = None) -> int:
    """The memory a render may use: a CUDA device's total, else the machine's RAM; with no device,
    the largest of the RAM and every CUDA device's total.

    Args:
        device: a :class:`torch.device`, or ``None``.
    """
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    if device is not None and device.type != "cuda":
        return int(ram)
    import torch

    if not torch.cuda.is_available():
        return int(ram)
    if device is not None:
        return int(torch.cuda.get_device_properties(device.index or 0).total_memory)
    totals = [torch.cuda.get_device_properties(i).total_memory for i in range(torch.cuda.device_count())]
    return int(max([ram, *totals]))


def _memory_problems(scene: Any, perceptors: list[PerceptorCheck], limit: int, device: Any) -> list[str]:
    """``cutouts`` whose batch of one micro-step does not fit in ``limit`` bytes for some perceptor."""
    micro = max(1, scene.cutouts // max(1, scene.gradient_accumulation_steps))
    where = "this machine" if device is None else str(device)
    problems = []
    for p in perceptors:
        need = cutout_bytes(micro, p.input_size)
        if need > limit:
            problems.append(
                f"cutouts: {_count(scene.cutouts)} cutouts of {p.input_size}x{p.input_size} px for "
                f"{p.name} need at least {_size(need)} per step, more than the {_size(limit)} of "
                f"{where}; lower cutouts or raise gradient_accumulation_steps (it must divide cutouts)"
            )
            break
    return problems


def _video_problems(scene: Any) -> list[str]:
    """Frame rates the encode cannot write (ffmpeg takes the rate as a fraction, denominator <= 1001)."""
    key, rate = ("fps", scene.fps) if scene.output.fps is None else ("output.fps", scene.output.fps)
    if rate >= MIN_VIDEO_FPS:
        return []
    return [
        f"{key}: {rate:g} frames per second is below the lowest rate the video encoder writes "
        f"({MIN_VIDEO_FPS:g}, one frame every {1 / MIN_VIDEO_FPS:g} s)"
    ]


def _count(value: int) -> str:
    """An integer as given, or ``about 1e+400`` when it has more than 15 digits."""
    text = str(value)
    return text if len(text) <= 15 else f"about {text[0]}.{text[1:3]}e+{len(text) - 1}"


def _size(nbytes: int) -> str:
    """Bytes in binary units (``1.5 GiB``), up to EiB; more as a power of ten (``about 1e+405 B``)."""
    if nbytes < 1024:
        return f"{nbytes} B"
    for power, unit in enumerate(("KiB", "MiB", "GiB", "TiB", "PiB", "EiB"), start=1):
        if nbytes < 1024 ** (power + 1) or unit == "EiB" and nbytes < 10**24:
            return f"{nbytes / 1024**power:.1f} {unit}"
    return f"about 1e+{len(str(nbytes)) - 1} B"
