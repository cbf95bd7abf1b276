"""Run directory: frame keys, the done check, atomic writes, the writable check."""

from pathlib import Path

import pytest
import torch

from pytti_engine.errors import OutputError
from pytti_engine.image_params.rgb import RGBImage
from pytti_engine.io import atomic_write_bytes
from pytti_engine.render import FrameResult
from pytti_engine.rundir import RunPaths, ensure_writable, frame_done, frame_keys, write_frame
from pytti_engine.state import RenderState, make_optimizer


def _result() -> FrameResult:
    image = RGBImage(torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(0)))
    state = RenderState(image=image, optimizer=make_optimizer(image, 0.02), step=5, frame=1)
    return FrameResult(state=state, image=image.decode().detach(), loss=0.5, seconds=0.1)


def test_keys_chain_so_a_change_invalidates_every_later_frame() -> None:
    frames = [{"t": i, "w": 1.0} for i in range(5)]
    base = frame_keys({"seed": 1}, frames)
    assert len(set(base)) == 5
    edited = [dict(f) for f in frames]
    edited[2]["w"] = 2.0
    changed = frame_keys({"seed": 1}, edited)
    assert changed[:2] == base[:2] and all(a != b for a, b in zip(changed[2:], base[2:], strict=True))
    assert frame_keys({"seed": 2}, frames)[0] != base[0]


def test_written_frame_is_done_and_corruption_is_detected(tmp_path: Path) -> None:
    paths = RunPaths(tmp_path)
    write_frame(paths, _result(), 1, "key-1")
    assert frame_done(paths, 1, "key-1")
    assert not frame_done(paths, 1, "other-key")
    assert not frame_done(paths, 2, "key-1")
    png = paths.frame_png(1)
    png.write_bytes(png.read_bytes()[:-1] + b"\0")
    assert not frame_done(paths, 1, "key-1"), "a PNG that fails its hash must not count as done"
    write_frame(paths, _result(), 1, "key-1")
    ckpt = paths.checkpoint(1)
    ckpt.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
    assert not frame_done(paths, 1, "key-1"), "a truncated checkpoint must not count as done"


def test_atomic_write_leaves_no_partial_file_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "f.bin"
    target.write_bytes(b"old")

    def boom(fh: object) -> None:
        raise RuntimeError("disk on fire")

    from pytti_engine.io import atomic_write

    with pytest.raises(RuntimeError):
        atomic_write(target, boom)  # type: ignore[arg-type]
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]
    atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"new"


def test_unwritable_output_directory_is_an_output_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OutputError, match="not writable"):
        ensure_writable(blocker / "run")
    ensure_writable(tmp_path / "a" / "b")
    assert (tmp_path / "a" / "b").is_dir()
