"""Files the product writes follow the user's umask (they were 0600 when temp files came from mkstemp)."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from pytti_engine.atomic import atomic_write_bytes, atomic_write_text
from pytti_engine.video import EncodeSettings, assemble_video


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_atomic_writes_follow_the_umask(tmp_path: Path, umask_022: None) -> None:
    atomic_write_bytes(tmp_path / "frame.png", b"x")
    atomic_write_text(tmp_path / "manifest.json", "{}")
    assert mode(tmp_path / "frame.png") == 0o644
    assert mode(tmp_path / "manifest.json") == 0o644
    os.umask(0o077)  # a private umask stays private
    atomic_write_bytes(tmp_path / "private.bin", b"x")
    assert mode(tmp_path / "private.bin") == 0o600


def test_videos_follow_the_umask(tmp_path: Path, umask_022: None) -> None:
    frames = []
    for i in range(2):
        frames.append(tmp_path / f"{i}.png")
        Image.new("RGB", (16, 16), (i * 100, 0, 0)).save(frames[-1])
    video = assemble_video(frames, tmp_path / "out.mp4", EncodeSettings(fps=12))
    assert mode(video) == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["0.png", "1.png", "out.mp4"]  # no temp file left
