"""Prompt targets: text embeddings computed once per scene, then looked up per frame."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch

from pytti_engine.perceptors import Perceptor


@dataclass(frozen=True)
class PromptTargets:
    """Embeddings of every prompt text of a render, one table per perceptor.

    Attributes:
        texts: the distinct prompt texts, in first-seen order.
        embeds: per perceptor, a (len(texts), D) tensor of L2-normalized text embeddings.
    """

    texts: tuple[str, ...]
    embeds: tuple[torch.Tensor, ...]

    def lookup(self, perceptor_index: int, text: str) -> torch.Tensor:
        """(D,) embedding of ``text`` for one perceptor."""
        return self.embeds[perceptor_index][self.texts.index(text)]


def embed_prompts(perceptors: Sequence[Perceptor], texts: Iterable[str]) -> PromptTargets:
    """Embed each distinct text once with every perceptor.

    Args:
        perceptors: the loaded perceptors.
        texts: prompt texts (duplicates are embedded once).

    Returns:
        The :class:`PromptTargets` table.
    """
    distinct = tuple(dict.fromkeys(texts))
    embeds = []
    for perceptor in perceptors:
        if distinct:
            embeds.append(perceptor.encode_text(list(distinct)).detach())
        else:
            embeds.append(torch.zeros(0, 1))
    return PromptTargets(texts=distinct, embeds=tuple(embeds))
