"""Source positions of joined scene text."""

from __future__ import annotations

from pytti_engine.scene import SourceRef, SourceText
from pytti_engine.scene.source import locate


def test_positions_follow_their_pieces() -> None:
    prefix = SourceText.at("style | ", SourceRef("s.yaml", 2, 15))
    stage = SourceText.at("a:sinn(t)", SourceRef("s.yaml", 7, 18))
    block = SourceText.at("multi\nline", SourceRef("s.yaml", 9, 5), exact=False)
    joined = SourceText.concat([prefix, stage, " | ", block])
    assert joined == "style | a:sinn(t) | multi\nline"
    assert joined.locate(0) == SourceRef("s.yaml", 2, 15)
    assert joined.locate(10) == SourceRef("s.yaml", 7, 20)  # the 's' of sinn
    assert joined.locate(18) is None  # inside the literal " | "
    assert joined.locate(25) == SourceRef("s.yaml", 9, 5)  # not exact: the start of the block
    assert locate("plain", 1) is None
