"""From a validated scene and its plan to what the renderer needs: keys and a render context."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from pytti_engine.errors import PyttiError
from pytti_engine.perceptors import Perceptor, load_perceptor
from pytti_engine.prompts import embed_prompts
from pytti_engine.render import RenderContext, RenderSettings
from pytti_engine.rundir import frame_keys

PerceptorLoader = Callable[[str, str | None, torch.device], Perceptor]


def _default_loader(model: str, pretrained: str | None, device: torch.device) -> Perceptor:
    return load_perceptor(model, pretrained, device=device)


def render_fingerprint(scene: Any) -> dict[str, Any]:
    """Every setting that affects pixels, JSON-friendly (the base of the frame keys)."""
    return {
        "render": RenderSettings.from_scene(scene).fingerprint(),
        "perceptors": [
            {"model": p.model, "pretrained": p.pretrained, "weight": p.weight} for p in scene.perceptors
        ],
    }


def plan_keys(scene: Any, plan: Any) -> list[str]:
    """The frame keys of a plan, known before anything renders."""
    return frame_keys(render_fingerprint(scene), (f.to_dict() for f in plan.frames))


def prompt_texts(plan: Any) -> list[str]:
    """Every distinct prompt text used anywhere in the plan, in first-use order."""
    return list(dict.fromkeys(p.text for f in plan.frames for p in f.prompts))


def check_renderable(plan: Any) -> None:
    """Refuse, before any model loads, prompt features this engine does not render yet.

    Raises:
        PyttiError: naming the first frame and prompt that uses an unsupported feature.
    """
    for frame in plan.frames:
        for prompt in frame.prompts:
            if prompt.image is not None:
                raise PyttiError(
                    f"frame {frame.index}: image prompt {prompt.text!r} is not supported by this engine yet"
                )
            if prompt.mask is not None:
                raise PyttiError(
                    f"frame {frame.index}: prompt {prompt.text!r} has a mask; masks are not supported yet"
                )


def build_context(
    scene: Any, plan: Any, device: torch.device, load: PerceptorLoader = _default_loader
) -> RenderContext:
    """Load the scene's perceptors (through ``load``) and embed every prompt once.

    Args:
        scene: the validated scene.
        plan: its plan.
        device: where to render.
        load: ``(model, pretrained, device) -> Perceptor``; the tasks layer passes a per-process cache.

    Returns:
        The :class:`RenderContext` for :func:`pytti_engine.render.render_frame`.
    """
    check_renderable(plan)
    perceptors = tuple(load(p.model, p.pretrained, device) for p in scene.perceptors)
    return RenderContext(
        settings=RenderSettings.from_scene(scene),
        perceptors=perceptors,
        perceptor_weights=tuple(float(p.weight) for p in scene.perceptors),
        targets=embed_prompts(perceptors, prompt_texts(plan)),
        device=device,
    )
