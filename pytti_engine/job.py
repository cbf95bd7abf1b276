"""From a validated scene and its plan to what the renderer needs: keys and a render context."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from pytti_engine.devices import make_generator
from pytti_engine.errors import PyttiError
from pytti_engine.hashes import Hasher, file_sha256
from pytti_engine.inputs import InputFile, Localize, frame_inputs, hash_inputs, input_uses, is_url
from pytti_engine.io import load_image
from pytti_engine.losses import hsv_target
from pytti_engine.motion import MotionRuntime, motion_fingerprint
from pytti_engine.perceptors import Perceptor, load_perceptor, weights_identity
from pytti_engine.prompts import (
    DirectTarget,
    ImagePromptTarget,
    PromptTargets,
    VideoMaskTarget,
    embed_image_prompt,
    embed_prompts,
)
from pytti_engine.render import RenderContext, RenderSettings
from pytti_engine.rundir import frame_keys
from pytti_engine.vqgan_files import VQGANFiles, check_image_model, vqgan_files, vqgan_identity

if TYPE_CHECKING:
    from pytti_engine.image_params.vqgan import VQGANModel

PerceptorLoader = Callable[[str, str | None, torch.device, bool | None], Perceptor]
VQGANLoader = Callable[[VQGANFiles, torch.device], "VQGANModel"]


def _default_loader(
    model: str, pretrained: str | None, device: torch.device, quick_gelu: bool | None
) -> Perceptor:
    return load_perceptor(model, pretrained, device=device, quick_gelu=quick_gelu)


def _default_vqgan_loader(files: VQGANFiles, device: torch.device) -> VQGANModel:
    from pytti_engine.image_params.vqgan import load_vqgan

    return load_vqgan(files, device)


def render_fingerprint(scene: Any, sha256: Hasher = file_sha256) -> dict[str, Any]:
    """Every setting that affects pixels, JSON-friendly (the base of the frame keys).

    Perceptors count with their weights' identity (the tag, or the sha256 of local weight files, as
    the manifest records it); a VQGAN with its checkpoint's sha256. ``sha256`` hashes the files (a run
    directory's :class:`~pytti_engine.hashes.HashCache`).
    """
    fingerprint = {
        "render": RenderSettings.from_scene(scene).fingerprint(),
        "perceptors": [
            {
                "model": p.model,
                "pretrained": p.pretrained,
                "weight": p.weight,
                "identity": weights_identity(p.model, p.pretrained, sha256),
            }
            | ({} if p.quick_gelu is None else {"quick_gelu": p.quick_gelu})  # unset: keys as before
            for p in scene.perceptors
        ],
    }
    files = vqgan_files(scene)
    if files is not None:  # the weights' identity, not their path (nothing is added for other models)
        fingerprint["vqgan"] = vqgan_identity(files, sha256)
    return {**fingerprint, **motion_fingerprint(scene)}  # motion adds nothing for off/2d scenes


def plan_inputs(
    scene: Any, plan: Any, sha256: Hasher = file_sha256, localize: Localize | None = None
) -> list[InputFile]:
    """Every input file the plan's frames read, with its sha256 (:func:`pytti_engine.inputs.input_uses`).

    Raises:
        PyttiError: an input file cannot be read, or a URL has not been fetched.
    """
    uses = input_uses(scene, plan) if localize is None else input_uses(scene, plan, localize)
    return hash_inputs(uses, sha256)


def plan_keys(
    scene: Any,
    plan: Any,
    base_keys: Sequence[str] = (),
    inputs: Sequence[InputFile] | None = None,
    sha256: Hasher = file_sha256,
) -> list[str]:
    """The frame keys of a plan, known before anything renders (``base_keys``: a fork's frames).

    A frame's key holds the sha256 of every input file it reads (``inputs``, default
    :func:`plan_inputs`), so editing one in place changes the keys from the first frame that reads it.
    """
    files = plan_inputs(scene, plan, sha256) if inputs is None else inputs
    per_frame = frame_inputs(files, len(plan.frames))
    frames = (
        {**f.to_dict(), "inputs": used} if used else f.to_dict()
        for f, used in zip(plan.frames, per_frame, strict=True)
    )
    return frame_keys(render_fingerprint(scene, sha256), frames, base_keys=base_keys)


def prompt_texts(plan: Any) -> list[str]:
    """Every distinct text to embed (text prompts and text masks), in first-use order."""
    texts: list[str] = []
    for frame in plan.frames:
        for p in frame.prompts:
            if p.image is None:
                texts.append(p.text)
            if p.mask is not None and p.mask.kind == "text":
                texts.append(p.mask.value)
    return list(dict.fromkeys(texts))


def image_prompt_sources(plan: Any) -> list[str]:
    """Every distinct semantic image prompt source of the plan, in first-use order."""
    return list(dict.fromkeys(p.image for f in plan.frames for p in f.prompts if p.image is not None))


def image_mask_sources(plan: Any, kind: str = "image") -> list[tuple[str, bool]]:
    """Every distinct ``(mask source, inverted)`` of the plan's ``kind`` (image/video) masks, in first-use
    order."""
    return list(
        dict.fromkeys(
            (p.mask.value, p.mask.inverted)
            for f in plan.frames
            for p in f.prompts
            if p.mask is not None and p.mask.kind == kind
        )
    )


def _check_local_picture(source: str, what: str, frame: int, prompt: str) -> None:
    if is_url(source):  # fetched into the run directory when the render starts (pytti_engine.fetch)
        return
    if not Path(source).is_file():
        raise PyttiError(f"frame {frame}: prompt {prompt!r}: {what} not found: {source}")


def check_renderable(plan: Any, scene: Any = None) -> None:
    """Refuse, before any model loads, what this engine cannot render.

    Semantic image prompts, image masks and video masks must be local files or http(s) URLs (fetched
    when the render starts); with ``scene``, the image model's files must be there too
    (:func:`check_image_model`).

    Raises:
        PyttiError: naming the first frame and prompt that uses an unsupported feature, or the missing
            model files.
    """
    if scene is not None:
        check_image_model(scene)
    for frame in plan.frames:
        for prompt in frame.prompts:
            if prompt.image is not None:
                _check_local_picture(prompt.image, "image prompt", frame.index, prompt.text)
            mask = prompt.mask
            if mask is None:
                continue
            if mask.kind in ("image", "video"):
                _check_local_picture(mask.value, f"{mask.kind} mask", frame.index, prompt.text)


def build_targets(
    perceptors: tuple[Perceptor, ...],
    plan: Any,
    settings: RenderSettings,
    device: torch.device,
    frame_stride: int = 1,
    vqgan: VQGANModel | None = None,
) -> PromptTargets:
    """Embed and load everything the prompts compare against, once per scene.

    Image prompts are embedded from ``cutouts`` cutouts per perceptor drawn from a generator seeded by
    (seed, source), at the render's size. Image masks are loaded in grey at the image size. Video masks
    are decoded once at the plan's fps and the image size; output frame ``k`` uses video frame
    ``min((k - 1) * frame_stride, N - 1)`` (``frame_stride``: the video source's, else 1). With a
    ``vqgan``, direct targets also carry their encoded latent (PyTTI's LatentLoss).
    """
    size = (settings.width, settings.height)
    text = embed_prompts(perceptors, prompt_texts(plan))
    # The stored cutouts are a full step's worth, so every micro-batch finds distinct partners.
    full = [replace(settings.cutout_config(p.input_size), cutouts=settings.cutouts) for p in perceptors]

    def embed(source: str | Path) -> ImagePromptTarget:
        gen = make_generator(settings.seed, 0, f"image-prompt:{source}")
        return embed_image_prompt(perceptors, load_image(Path(source), size, device=device), full, gen)

    images = {source: embed(source) for source in image_prompt_sources(plan)}
    masks = {}
    for source, inverted in image_mask_sources(plan):
        grey = load_image(Path(source), size, device=device).mean(dim=1)[0]  # (H, W)
        masks[(source, inverted)] = 1 - grey if inverted else grey
    videos, decoded = {}, {}
    for source, inverted in image_mask_sources(plan, "video"):
        from pytti_engine.video_source import decode_source

        if source not in decoded:  # (N, H, W, 3) uint8, shared by the mask and its inverse
            decoded[source] = torch.from_numpy(decode_source(Path(source), float(plan.fps), size)).to(device)
        videos[(source, inverted)] = VideoMaskTarget(decoded[source], inverted, frame_stride)

    def direct_target(path: Path, weight: float, stop: float | None = None) -> DirectTarget:
        picture = load_image(path, size, device=device)
        latent = None if vqgan is None else vqgan.encode(picture)
        return DirectTarget(hsv_target(picture), weight, stop, latent)

    direct = tuple(direct_target(path, weight, stop) for path, weight, stop in settings.direct_image_prompts)
    init_direct = init_image = None
    if settings.init_image is not None and settings.direct_init_weight:
        init_direct = direct_target(settings.init_image, settings.direct_init_weight)
    if settings.init_image is not None and settings.semantic_init_weight:
        init_image = embed(settings.init_image)
    return PromptTargets(
        texts=text.texts,
        embeds=text.embeds,
        images=images,
        masks=masks,
        video_masks=videos,
        direct=direct,
        init_direct=init_direct,
        init_image=init_image,
    )


def build_context(
    scene: Any,
    plan: Any,
    device: torch.device,
    load: PerceptorLoader = _default_loader,
    flow_dir: Path | None = None,
    load_vqgan: VQGANLoader = _default_vqgan_loader,
) -> RenderContext:
    """Load the scene's perceptors (through ``load``) and compute every prompt target once.

    Args:
        scene: the validated scene.
        plan: its plan.
        device: where to render.
        load: ``(model, pretrained, device, quick_gelu) -> Perceptor``; the tasks layer passes a
            per-process cache.
        flow_dir: video mode: where flows precomputed ahead of the chain are (missing ones are computed).
        load_vqgan: ``(files, device) -> VQGANModel`` for a vqgan scene; the tasks layer passes a cache.

    Returns:
        The :class:`RenderContext` for :func:`pytti_engine.render.render_frame`.
    """
    check_renderable(plan)
    files = check_image_model(scene)
    settings = RenderSettings.from_scene(scene)
    perceptors = tuple(load(p.model, p.pretrained, device, p.quick_gelu) for p in scene.perceptors)
    vqgan = None if files is None else load_vqgan(files, device)
    return RenderContext(
        settings=settings,
        perceptors=perceptors,
        perceptor_weights=tuple(float(p.weight) for p in scene.perceptors),
        targets=build_targets(perceptors, plan, settings, device, _mask_stride(scene), vqgan),
        device=device,
        motion=MotionRuntime.from_scene(scene, device, flow_dir=flow_dir),
        vqgan=vqgan,
    )


def _mask_stride(scene: Any) -> int:
    """Video frames per output frame for video masks: the video source's ``frame_stride``, else 1."""
    return int(scene.frame_stride) if scene.animation == "video" else 1
