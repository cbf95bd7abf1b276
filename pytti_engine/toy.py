"""A trained toy perceptor: a tiny CLIP that learns colours (and a little about shapes) in seconds.

A random-weight perceptor cannot show what a prompt does. This module trains a tiny open_clip model
(architecture ``pytti-toy``: 2-layer ViT with 8 px patches on 32 px pictures, 2-layer text tower with a
context of 8 tokens, 32-d embeddings) on pictures it draws itself: one coloured shape (a square or a
circle in red, green, blue or yellow) on a randomly tinted grey ground, captioned ``"a red circle"``,
``"a blue square"``, ... It is saved in open_clip's ``local-dir:`` layout and loads through
:func:`pytti_engine.perceptors.load_perceptor` exactly like real weights.

What it knows: the four colour words, reliably (zero-shot colour accuracy on fresh pictures is checked
after training; training continues until it reaches :attr:`ToyTraining.target_accuracy`); the shapes
only weakly. Through CLIP guidance a colour prompt visibly pulls a picture toward its colour, a negative
one pushes away, and masks, weights and stops act where they should. Prompts are truncated to 8 tokens.

Training is CPU-only, single-threaded while it runs (so the weights depend only on the seed, the code
and the torch version) and deterministic. :func:`cached_toy` keeps one trained copy per
:func:`toy_key` (a hash of this file, the architecture config, the training settings and the library
versions) in a cache folder, so it trains once per machine.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import open_clip
import torch
import torch.nn.functional as F
from torch import Tensor

from pytti_engine.errors import ModelLoadError
from pytti_engine.perceptors import (
    package_model_config,
    random_model,
    read_local_dir_info,
    save_local_dir,
)

logger = logging.getLogger(__name__)

TOY_MODEL = "pytti-toy"
"""Architecture name of the toy perceptor (package data ``model_configs/pytti-toy.json``)."""
TOY_COLOURS: tuple[tuple[str, tuple[float, float, float]], ...] = (
    ("red", (0.9, 0.1, 0.1)),
    ("green", (0.1, 0.75, 0.1)),
    ("blue", (0.1, 0.25, 0.95)),
    ("yellow", (0.95, 0.85, 0.1)),
)
"""The colour words the toy perceptor learns and the RGB in [0, 1] it draws for each."""
TOY_SHAPES = ("square", "circle")
"""The shape words of its captions."""


def toy_captions() -> tuple[str, ...]:
    """Every caption the toy perceptor is trained on: ``"a <colour> <shape>"``, colour-major.

    Caption ``k`` is colour ``k // len(TOY_SHAPES)`` and shape ``k % len(TOY_SHAPES)`` (the labels of
    :func:`draw_toy_pictures`).
    """
    return tuple(f"a {colour} {shape}" for colour, _ in TOY_COLOURS for shape in TOY_SHAPES)


@dataclass(frozen=True)
class ToyTraining:
    """How the toy perceptor is trained (every field is part of :func:`toy_key`).

    Attributes:
        seed: seeds the initial weights and the picture stream.
        batch: pictures per step.
        chunk_steps: steps between accuracy checks.
        max_steps: give up (ModelLoadError) when the target accuracy is not reached by then.
        target_accuracy: zero-shot colour accuracy on ``eval_pictures`` fresh pictures to stop at.
        learning_rate: AdamW learning rate.
        weight_decay: AdamW weight decay.
        eval_pictures: pictures in the held-out accuracy check.
        image_size: side of the training pictures (the architecture's input size).
    """

    seed: int = 0
    batch: int = 64
    chunk_steps: int = 50
    max_steps: int = 600
    target_accuracy: float = 0.97
    learning_rate: float = 2e-3
    weight_decay: float = 0.01
    eval_pictures: int = 256
    image_size: int = 32


@dataclass(frozen=True)
class ToyReport:
    """What training achieved.

    Attributes:
        steps: optimizer steps taken.
        seconds: wall time of the training loop.
        colour_accuracy: zero-shot accuracy of the colour word on fresh pictures.
        caption_accuracy: zero-shot accuracy of the whole caption (colour and shape).
    """

    steps: int
    seconds: float
    colour_accuracy: float
    caption_accuracy: float


def draw_toy_pictures(n: int, generator: torch.Generator, size: int = 32) -> tuple[Tensor, Tensor]:
    """Draw ``n`` pictures of one coloured shape on a tinted grey ground, and their caption labels.

    Each picture: a ground of grey level ``U(0.15, 0.85)`` mixed with a random colour by up to 35 %; a
    square or a circle of radius ``U(0.15, 0.45)·size`` centred anywhere in the picture (so it may be
    cut by the border), filled with its colour from :data:`TOY_COLOURS` jittered by ±0.05 per channel;
    then per-picture Gaussian noise of standard deviation ``U(0, 0.05)`` (cutouts carry noise too).

    Args:
        n: number of pictures.
        generator: the source of every random draw (CPU).
        size: side in pixels.

    Returns:
        ``(images, labels)``: :math:`(n, 3, size, size)` RGB in [0, 1] and :math:`(n,)` int64 caption
        indices into :func:`toy_captions`.
    """
    colours = torch.tensor([rgb for _, rgb in TOY_COLOURS])
    colour = torch.randint(len(TOY_COLOURS), (n,), generator=generator)
    shape = torch.randint(len(TOY_SHAPES), (n,), generator=generator)
    grey = 0.15 + 0.7 * torch.rand(n, 1, generator=generator)
    tint = torch.rand(n, 3, generator=generator)
    mix = 0.35 * torch.rand(n, 1, generator=generator)
    ground = grey * (1 - mix) + tint * mix
    radius = size * (0.15 + 0.3 * torch.rand(n, generator=generator))
    centre = size * torch.rand(n, 2, generator=generator)
    fill = (colours[colour] + 0.1 * (torch.rand(n, 3, generator=generator) - 0.5)).clamp(0, 1)
    noise = 0.05 * torch.rand(n, 1, 1, 1, generator=generator)
    grain = torch.randn(n, 3, size, size, generator=generator)
    coords = torch.arange(size, dtype=torch.float32) + 0.5
    dx = coords.view(1, 1, size) - centre[:, 0].view(n, 1, 1)
    dy = coords.view(1, size, 1) - centre[:, 1].view(n, 1, 1)
    r = radius.view(n, 1, 1)
    circle = dx.square() + dy.square() <= r.square()
    square = (dx.abs() <= 0.886 * r) & (dy.abs() <= 0.886 * r)  # the circle's area
    inside = torch.where(shape.view(n, 1, 1) == 1, circle, square).unsqueeze(1).float()
    images = ground.view(n, 3, 1, 1) * (1 - inside) + fill.view(n, 3, 1, 1) * inside
    return (images + noise * grain).clamp(0, 1), colour * len(TOY_SHAPES) + shape


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """Run the body with one intra-op thread (reproducible reductions), then restore the count."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _normalize(images: Tensor) -> Tensor:
    mean = torch.tensor(open_clip.OPENAI_DATASET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(open_clip.OPENAI_DATASET_STD).view(1, 3, 1, 1)
    return (images - mean) / std


def _accuracy(model: torch.nn.Module, tokens: Tensor, training: ToyTraining) -> tuple[float, float]:
    """Zero-shot (colour, caption) accuracy on fresh pictures from a generator of their own."""
    gen = torch.Generator().manual_seed(training.seed + 1_000_003)
    images, labels = draw_toy_pictures(training.eval_pictures, gen, training.image_size)
    with torch.no_grad():
        image_embeds = F.normalize(model.encode_image(_normalize(images)), dim=-1)  # type: ignore[operator]
        text_embeds = F.normalize(model.encode_text(tokens), dim=-1)  # type: ignore[operator]
    guess = (image_embeds @ text_embeds.T).argmax(dim=1)
    shapes = len(TOY_SHAPES)
    colour = float((guess // shapes == labels // shapes).float().mean())
    return colour, float((guess == labels).float().mean())


def train_toy_clip(training: ToyTraining | None = None) -> tuple[torch.nn.Module, ToyReport]:
    """Train the toy perceptor on the CPU (single-threaded while it runs).

    Image-to-text cross entropy over the captions of :func:`toy_captions`, AdamW, batches drawn by
    :func:`draw_toy_pictures`. The token embedding table (49408 rows, of which the captions use a
    handful) stays at its random initialisation; everything else learns. Every ``chunk_steps`` steps the
    zero-shot colour accuracy is measured; training stops once it reaches ``target_accuracy``.

    Args:
        training: the settings (defaults: :class:`ToyTraining`).

    Returns:
        The trained open_clip model (eval mode, CPU, float32) and a :class:`ToyReport`.

    Raises:
        ModelLoadError: the target accuracy was not reached within ``max_steps``.
    """
    cfg = training or ToyTraining()
    model: Any = random_model(TOY_MODEL, cfg.seed)  # an open_clip CLIP (its methods are untyped)
    with _one_thread():
        tokens = open_clip.get_tokenizer(TOY_MODEL)(list(toy_captions()))
        model.token_embedding.requires_grad_(False)
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(
            params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay, foreach=False
        )
        gen = torch.Generator().manual_seed(cfg.seed)
        start, steps, accuracy = time.perf_counter(), 0, (0.0, 0.0)
        while steps < cfg.max_steps:
            model.train()
            for _ in range(cfg.chunk_steps):
                images, labels = draw_toy_pictures(cfg.batch, gen, cfg.image_size)
                image_embeds = F.normalize(model.encode_image(_normalize(images)), dim=-1)
                text_embeds = F.normalize(model.encode_text(tokens), dim=-1)
                logits = model.logit_scale.exp() * image_embeds @ text_embeds.T
                loss = F.cross_entropy(logits, labels)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            steps += cfg.chunk_steps
            model.eval()
            accuracy = _accuracy(model, tokens, cfg)
            logger.debug("toy perceptor: %d steps, colour accuracy %.3f", steps, accuracy[0])
            if accuracy[0] >= cfg.target_accuracy:
                break
        seconds = time.perf_counter() - start
    if accuracy[0] < cfg.target_accuracy:
        raise ModelLoadError(
            f"the toy perceptor reached only {accuracy[0]:.0%} colour accuracy in {steps} steps "
            f"(needs {cfg.target_accuracy:.0%})"
        )
    model.requires_grad_(False)
    return model, ToyReport(steps, seconds, accuracy[0], accuracy[1])


def toy_key(training: ToyTraining | None = None) -> str:
    """A hash of everything that determines the trained weights.

    This file's source, the architecture config, the training settings, and the torch and open_clip
    versions. A cached copy under another key is never reused.

    Returns:
        A 64-character hex sha256.
    """
    digest = hashlib.sha256()
    digest.update(Path(__file__).read_bytes())
    payload = {
        "model_cfg": package_model_config(TOY_MODEL),
        "training": asdict(training or ToyTraining()),
        "torch": torch.__version__,
        "open_clip": open_clip.__version__,
    }
    digest.update(json.dumps(payload, sort_keys=True).encode())
    return digest.hexdigest()


def write_toy(directory: str | Path, training: ToyTraining | None = None) -> ToyReport:
    """Train the toy perceptor and write it in the ``local-dir:`` layout.

    ``open_clip_config.json`` (the architecture, OpenAI's mean/std, and a ``pytti`` entry with the key,
    the captions and the training report) and ``open_clip_model.safetensors`` (float32, about 14 MB:
    mostly the unused rows of the token table). The weights are written before the config, each through
    a temporary file and a rename, so an interrupted write never looks complete.

    Args:
        directory: the folder to write (created if needed); existing files of the same names are replaced.
        training: the settings (defaults: :class:`ToyTraining`).

    Returns:
        The training report; load the folder with ``load_perceptor("local-dir:" + str(directory))``.
    """
    cfg = training or ToyTraining()
    model, report = train_toy_clip(cfg)
    save_local_dir(
        directory,
        package_model_config(TOY_MODEL),
        model.state_dict(),
        mean=open_clip.OPENAI_DATASET_MEAN,
        std=open_clip.OPENAI_DATASET_STD,
        pytti={
            "toy": True,
            "key": toy_key(cfg),
            "captions": list(toy_captions()),
            "training": asdict(cfg),
            "report": asdict(report),
        },
    )
    logger.info(
        "trained the toy perceptor in %.1f s (%d steps, colour accuracy %.0f%%) into %s",
        report.seconds,
        report.steps,
        100 * report.colour_accuracy,
        directory,
    )
    return report


def read_toy_report(directory: str | Path) -> ToyReport | None:
    """The training report stored in a toy perceptor folder, or ``None`` when it is not a toy folder."""
    info = read_local_dir_info(directory)
    try:
        return ToyReport(**info["report"]) if info.get("toy") else None
    except (KeyError, TypeError):
        return None


def toy_cache_folder(cache_dir: str | Path, training: ToyTraining | None = None) -> Path:
    """Where :func:`cached_toy` keeps the toy perceptor of these settings: ``toy-clip-<key[:16]>``."""
    return Path(cache_dir) / f"toy-clip-{toy_key(training)[:16]}"


def cached_toy(cache_dir: str | Path, training: ToyTraining | None = None) -> Path:
    """The toy perceptor's folder in ``cache_dir``, trained on first use.

    The folder is ``cache_dir/toy-clip-<first 16 hex digits of toy_key>``. It is written into a
    temporary sibling and renamed into place, so concurrent callers never see a partial folder (the
    loser of a race discards its copy).

    Args:
        cache_dir: the cache root (created if needed).
        training: the settings (defaults: :class:`ToyTraining`).

    Returns:
        The folder, ready for ``model: local-dir:<folder>``.
    """
    root = Path(cache_dir)
    final = toy_cache_folder(root, training)
    if read_toy_report(final) is not None:
        return final
    root.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".toy-clip-", dir=root))
    try:
        write_toy(scratch, training)
        for path in (scratch, *scratch.iterdir()):  # mkdtemp and safetensors create owner-only modes
            path.chmod(0o755 if path.is_dir() else 0o644)
        if final.exists() and read_toy_report(final) is None:
            shutil.rmtree(final, ignore_errors=True)  # an unusable leftover (not written by cached_toy)
        try:
            os.rename(scratch, final)
        except OSError:
            if read_toy_report(final) is None:
                raise  # not a lost race: a real failure
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return final
