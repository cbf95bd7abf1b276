"""Prompt targets: everything a render compares against, computed once per scene.

- text embeddings of every prompt text and text-mask text, one table per perceptor;
- semantic image prompts ``[image.png]``: the picture's cutouts embedded once per perceptor, with
  where those cutouts lay, so each step can pair them with the current cutouts (PyTTI's
  ``LocationAwareMCIP``: Hungarian matching of cutout centres, distances offset by 0.7);
- image masks at the image size, and video masks (``_[mask.mp4]``) decoded once at the scene's fps and
  the image size, one mask frame per output frame;
- direct image targets (HSV) for ``direct_image_prompts`` and ``direct_init_weight``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from pytti_engine.checks import check_shape
from pytti_engine.cutouts import CutoutConfig, Cutouts, sample_cutouts
from pytti_engine.losses import gated_loss, paired_spherical_distance
from pytti_engine.perceptors import Perceptor

IMAGE_PROMPT_OFFSET = 0.7
"""Added to every semantic-image-prompt distance (PyTTI's constant; it shifts the value and the stop)."""


@dataclass(frozen=True)
class ImagePromptTarget:
    """A semantic image prompt's cutouts, embedded once.

    Attributes:
        embeds: per perceptor, :math:`(M, D)` L2-normalized cutout embeddings.
        offsets: per perceptor, :math:`(M, 2)` normalized centres of those cutouts (CPU).
    """

    embeds: tuple[Tensor, ...]
    offsets: tuple[Tensor, ...]


@dataclass(frozen=True)
class DirectTarget:
    """A direct image prompt: an HSV target picture and its weight.

    Attributes:
        hsv: :math:`(1, 5, H, W)` ``[R, G, B, S, V]`` of the target at the image size.
        weight: loss weight (negative pushes away).
        stop: gradient gate, or ``None``.
        latent: VQGAN: :math:`(1, E, h, w)` the target's quantized latent (the loss is then PyTTI's
            LatentLoss instead of the HSV error), else ``None``.
    """

    hsv: Tensor
    weight: float
    stop: float | None = None
    latent: Tensor | None = None


@dataclass(frozen=True)
class VideoMaskTarget:
    """A video mask (``_[mask.mp4]``), decoded once per scene.

    Output frame ``k`` (1-based) uses video frame ``min((k - 1) * frame_stride, N - 1)``, the mapping of
    the video source (:func:`pytti_engine.video_source.source_index`); each frame is used exactly like an
    image mask (grey = the mean of R, G, B).

    Attributes:
        frames: :math:`(N, H, W, 3)` uint8 frames at the scene's fps and the image size.
        inverted: use ``1 - mask`` (``_[-mask.mp4]``).
        frame_stride: video frames per output frame.
    """

    frames: Tensor
    inverted: bool = False
    frame_stride: int = 1

    def index(self, frame: int) -> int:
        """The video frame (0-based) of output ``frame`` (1-based), clamped to the last."""
        if frame < 1:
            raise ValueError(f"frames are numbered from 1, got {frame}")
        return min((frame - 1) * self.frame_stride, self.frames.shape[0] - 1)

    def at(self, frame: int) -> Tensor:
        """:math:`(H, W)` the mask of output ``frame`` in [0, 1] (inverted when asked)."""
        grey = self.frames[self.index(frame)].float().div(255.0).mean(dim=-1)
        return 1 - grey if self.inverted else grey


@dataclass(frozen=True)
class PromptTargets:
    """Everything prompts compare against, for one render.

    Attributes:
        texts: the distinct texts (prompts and text masks), in first-seen order.
        embeds: per perceptor, a (len(texts), D) tensor of L2-normalized text embeddings.
        images: semantic image prompts by source (the plan's ``PromptValue.image``).
        masks: image masks by ``(source, inverted)``, each :math:`(H, W)` in [0, 1].
        video_masks: video masks by ``(source, inverted)``.
        direct: direct image prompts (every frame).
        init_direct: the ``direct_init_weight`` target, or ``None``.
        init_image: the ``semantic_init_weight`` image prompt, or ``None``.
    """

    texts: tuple[str, ...]
    embeds: tuple[Tensor, ...]
    images: Mapping[str, ImagePromptTarget] = field(default_factory=dict)
    masks: Mapping[tuple[str, bool], Tensor] = field(default_factory=dict)
    video_masks: Mapping[tuple[str, bool], VideoMaskTarget] = field(default_factory=dict)
    direct: tuple[DirectTarget, ...] = ()
    init_direct: DirectTarget | None = None
    init_image: ImagePromptTarget | None = None

    def lookup(self, perceptor_index: int, text: str) -> Tensor:
        """(D,) embedding of ``text`` for one perceptor."""
        return self.embeds[perceptor_index][self.texts.index(text)]

    def mask_for(self, kind: str, source: str, inverted: bool, frame: int) -> Tensor:
        """:math:`(H, W)` the picture of an image or video mask for output ``frame`` (1-based).

        Args:
            kind: ``image`` or ``video``.
            source: the mask file (the plan's ``MaskValue.value``).
            inverted: ``_[-mask]``.
            frame: the output frame (selects a video mask's frame).
        """
        if kind == "video":
            return self.video_masks[(source, inverted)].at(frame)
        return self.masks[(source, inverted)]


def embed_prompts(perceptors: Sequence[Perceptor], texts: Iterable[str]) -> PromptTargets:
    """Embed each distinct text once with every perceptor.

    Args:
        perceptors: the loaded perceptors.
        texts: prompt texts (duplicates are embedded once).

    Returns:
        The :class:`PromptTargets` table (no image targets).
    """
    distinct = tuple(dict.fromkeys(texts))
    embeds = []
    for perceptor in perceptors:
        if distinct:
            embeds.append(perceptor.encode_text(list(distinct)).detach().float())
        else:
            embeds.append(torch.zeros(0, 1))
    return PromptTargets(texts=distinct, embeds=tuple(embeds))


@torch.no_grad()
def embed_image_prompt(
    perceptors: Sequence[Perceptor],
    picture: Tensor,
    configs: Sequence[CutoutConfig],
    generator: torch.Generator,
) -> ImagePromptTarget:
    """Embed a picture's cutouts once per perceptor (PyTTI embeds an image prompt at parse time).

    Args:
        perceptors: the loaded perceptors.
        picture: :math:`(1, 3, H, W)` in [0, 1], at the render's size.
        configs: the cutout config of each perceptor (as used for rendering).
        generator: the source of the cutouts.

    Returns:
        The stored embeddings and cutout centres.
    """
    check_shape(picture, "1 3 H W")
    embeds, offsets = [], []
    for perceptor, config in zip(perceptors, configs, strict=True):
        cuts = sample_cutouts(picture.to(perceptor.device), config, generator)
        embeds.append(perceptor.encode_image(cuts.images).float())
        offsets.append(cuts.offsets.detach().cpu())
    return ImagePromptTarget(embeds=tuple(embeds), offsets=tuple(offsets))


def match_cutouts(stored: Tensor, current: Tensor) -> Tensor:
    """For each current cutout, the stored cutout paired with it (minimum total centre distance).

    Hungarian assignment (``scipy.optimize.linear_sum_assignment``) on the Euclidean distances of the
    normalized centres, as PyTTI's ``minimize_average_distance``; every current cutout gets a distinct
    stored one, so ``M >= N`` is required.

    Args:
        stored: :math:`(M, 2)` centres of the stored cutouts.
        current: :math:`(N, 2)` centres of this step's cutouts.

    Returns:
        :math:`(N,)` long indices into ``stored`` (on ``stored``'s device).
    """
    check_shape(stored, "M 2")
    check_shape(current, "N 2")
    if current.shape[0] > stored.shape[0]:
        raise ValueError(f"cannot pair {current.shape[0]} cutouts with {stored.shape[0]} stored ones")
    a = current.detach().cpu().double().numpy()
    b = stored.detach().cpu().double().numpy()
    cost = np.linalg.norm(a[:, None, :] - b[None, :, :], axis=-1)
    rows, cols = linear_sum_assignment(cost)
    index = np.empty(a.shape[0], dtype=np.int64)
    index[rows] = cols
    return torch.from_numpy(index).to(stored.device)


def image_prompt_loss(
    target: ImagePromptTarget,
    index: int,
    embeds: Tensor,
    cuts: Cutouts,
    weight: float | Tensor,
    stop: float | None,
    mask_stop: Tensor | None = None,
) -> Tensor:
    """A semantic image prompt's loss: pair cutouts by position, distance + 0.7, then the stop gate.

    Args:
        target: the embedded picture.
        index: the perceptor's index.
        embeds: :math:`(N, D)` this step's cutout embeddings.
        cuts: this step's cutouts (for their centres).
        weight: the prompt weight, or :math:`(N,)` per-cutout weights.
        stop: the prompt's stop, or ``None``.
        mask_stop: :math:`(N,)` gate from a mask, or ``None``.

    Returns:
        Scalar loss.
    """
    pairs = match_cutouts(target.offsets[index], cuts.offsets)
    stored = target.embeds[index].index_select(0, pairs.to(target.embeds[index].device))
    distance = paired_spherical_distance(embeds, stored.to(embeds)) + IMAGE_PROMPT_OFFSET
    return gated_loss(distance, weight, stop, mask_stop)
