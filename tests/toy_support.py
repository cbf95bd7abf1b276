"""Helpers for tests that measure what a prompt does, with the trained toy perceptor (pytti_engine.toy).

The toy perceptor knows four colour words. A render's effect is read two ways: the colour statistics
of the picture (mean R, G, B over a region) and the toy model's own score of the picture against each
colour's captions. Tests use red and green: to the toy model a flat grey picture already looks blue,
so a blue prompt has little to do.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image

from pytti_engine.job import build_context
from pytti_engine.perceptors import Perceptor
from pytti_engine.render import FrameResult, RenderContext, StepCallback, initial_state, render_frame
from pytti_engine.scene import Plan, build_plan, load_scene
from pytti_engine.toy import TOY_COLOURS, TOY_SHAPES
from tests.scene_files import small_scene_text

CPU = torch.device("cpu")
GREY = (102, 102, 102)
Loader = Callable[[str, str | None, torch.device, bool | None], Perceptor]


def toy_scene(
    path: Path,
    toy_dir: Path,
    prompts: str,
    *,
    body: str = "",
    size: int = 32,
    steps: int = 12,
    frames: int = 1,
    cutouts: int = 4,
    seed: int = 3,
    learning_rate: float = 0.05,
) -> Path:
    """Write a small scene guided by the toy perceptor, starting from a flat grey picture (``grey.png``
    beside the scene) unless ``body`` sets ``init_image``; no smoothing, so only the prompts act."""
    if "init_image:" not in body:
        solid_picture(path.parent / "grey.png", GREY, size)
        body = "init_image: grey.png\n" + textwrap.dedent(body)
    settings = f"learning_rate: {learning_rate}\nsmoothing_weight: 0\n" + textwrap.dedent(body)
    text = small_scene_text(
        toy_dir, settings, prompts=prompts, size=size, frames=frames, steps=steps, seed=seed, cutouts=cutouts
    )
    path.write_text(text)
    return path


def render(
    path: Path, load: Loader, overrides: Sequence[str] = (), on_step: StepCallback | None = None
) -> tuple[RenderContext, list[FrameResult]]:
    """Render every frame of a scene file on the CPU; returns the context and each frame's result."""
    scene = load_scene(path, list(overrides))
    plan: Plan = build_plan(scene)
    ctx = build_context(scene, plan, CPU, load=load)
    results: list[FrameResult] = []
    state = None
    for frame in plan.frames:
        results.append(render_frame(state, frame, ctx, on_step))
        state = results[-1].state
    return ctx, results


def start_image(path: Path, load: Loader) -> torch.Tensor:
    """The picture before any step (the init image or the seeded noise) of a scene file."""
    scene = load_scene(path)
    ctx = build_context(scene, build_plan(scene), CPU, load=load)
    return initial_state(ctx).image.decode_output()


def rgb(image: torch.Tensor) -> tuple[float, float, float]:
    """Mean R, G, B of a (1, 3, H, W) picture."""
    r, g, b = (float(v) for v in image.mean(dim=(0, 2, 3)))
    return r, g, b


def redness(image: torch.Tensor) -> float:
    """Mean of ``R - (G + B) / 2``: how red a picture (or region) is."""
    r, g, b = rgb(image)
    return r - (g + b) / 2


def greenness(image: torch.Tensor) -> float:
    """Mean of ``G - (R + B) / 2``."""
    r, g, b = rgb(image)
    return g - (r + b) / 2


def colour_scores(perceptor: Perceptor, image: torch.Tensor) -> dict[str, float]:
    """The toy model's cosine similarity of the whole picture to each colour (mean over its shapes)."""
    size = perceptor.input_size
    picture = F.interpolate(image, size=(size, size), mode="area") if image.shape[-1] != size else image
    with torch.no_grad():
        embed = perceptor.encode_image(picture)[0]
    scores = {}
    for colour, _ in TOY_COLOURS:
        texts = perceptor.encode_text([f"a {colour} {shape}" for shape in TOY_SHAPES])
        scores[colour] = float((texts @ embed).mean())
    return scores


def solid_picture(path: Path, colour: tuple[int, int, int], size: int = 32) -> Path:
    """Save a one-colour picture."""
    Image.new("RGB", (size, size), colour).save(path)
    return path


def half_mask(path: Path, size: int = 32, *, left: bool = True) -> Path:
    """Save a mask picture: white on the left (or right) half, black elsewhere."""
    im = Image.new("RGB", (size, size), (0, 0, 0))
    im.paste((255, 255, 255), (0, 0, size // 2, size) if left else (size // 2, 0, size, size))
    im.save(path)
    return path


def colour_swapped_toy(toy_dir: Path, out: Path, first: str = "red", second: str = "green") -> Path:
    """A copy of the toy perceptor that reads ``first`` as ``second`` and back.

    The two words' rows of the token table are swapped, so the copy embeds ``"a red square"`` exactly
    as the original embeds ``"a green square"``: a second perceptor that pulls the other way.
    """
    from open_clip.tokenizer import SimpleTokenizer
    from safetensors.torch import load_file, save_file

    (a,), (b,) = SimpleTokenizer().encode(first), SimpleTokenizer().encode(second)
    out.mkdir(parents=True, exist_ok=True)
    state = load_file(toy_dir / "open_clip_model.safetensors")
    table = state["token_embedding.weight"].clone()
    table[[a, b]] = table[[b, a]]
    state["token_embedding.weight"] = table
    save_file(state, str(out / "open_clip_model.safetensors"))
    (out / "open_clip_config.json").write_text((toy_dir / "open_clip_config.json").read_text())
    return out
