"""Run directory: frame keys, the done check, atomic writes, the writable check."""

import os
from pathlib import Path

import pytest
import torch

from pytti_engine.errors import OutputError
from pytti_engine.image_params.rgb import RGBImage
from pytti_engine.io import atomic_write_bytes
from pytti_engine.render import FrameResult
from pytti_engine.rundir import (
    Retention,
    RunPaths,
    checkpoint_good,
    ensure_writable,
    frame_done,
    frame_keys,
    newest_good_checkpoint,
    prune_checkpoints,
    write_frame,
)
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
    assert checkpoint_good(paths, 1, "key-1")
    ckpt = paths.checkpoint(1)
    ckpt.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
    assert frame_done(paths, 1, "key-1"), "the frame itself (record + PNG) is intact"
    assert not checkpoint_good(paths, 1, "key-1"), "a truncated checkpoint must not be continued from"
    assert newest_good_checkpoint(paths, 2, ["key-1"]) is None


def test_retention_policies() -> None:
    assert Retention.parse("all").keeps(1, 10)
    last = Retention.parse("last:2")
    assert [i for i in range(1, 11) if last.keeps(i, 10)] == [9, 10]
    every = Retention.parse("every:4")
    assert [i for i in range(1, 11) if every.keeps(i, 10)] == [4, 8, 10]
    with pytest.raises(ValueError, match="keep_checkpoints"):
        Retention.parse("last:0")


def test_prune_checkpoints_deletes_only_what_the_policy_drops(tmp_path: Path) -> None:
    paths = RunPaths(tmp_path)
    for i in range(1, 6):
        write_frame(paths, _result(), i, f"k{i}")
    assert prune_checkpoints(paths, Retention.parse("last:2"), 5) == [1, 2, 3]
    assert sorted(p.name for p in paths.checkpoints_dir.iterdir()) == ["000004.pt", "000005.pt"]
    assert all(frame_done(paths, i, f"k{i}") for i in range(1, 6)), "pruning never undoes a frame"


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


def test_stale_temp_files_are_removed(tmp_path: Path) -> None:
    from pytti_engine.rundir import remove_stale_temp_files

    paths = RunPaths(tmp_path)
    write_frame(paths, _result(), 1, "k1")
    (paths.frames_dir / ".000002.png.abc.tmp").write_bytes(b"half")
    (paths.checkpoints_dir / ".000002.pt.x.tmp").write_bytes(b"half")
    assert remove_stale_temp_files(paths) == 2
    assert not list(tmp_path.rglob("*.tmp")) and frame_done(paths, 1, "k1")


def test_a_video_encode_killed_mid_way_leaves_nothing_behind(tmp_path: Path) -> None:
    """A kill during the encode leaves ffmpeg's ``.<stem>.<random>.part.mp4``: the next render removes it."""
    from pytti_engine.atomic import create_temp_beside
    from pytti_engine.rundir import remove_stale_temp_files

    paths = RunPaths(tmp_path)
    video = paths.video("scene")
    video.write_bytes(b"an older, complete video")
    stale = []
    for container in ("mp4", "webm", "gif"):
        fd, part = create_temp_beside(video.with_name(video.stem), suffix=f".part.{container}")
        os.close(fd)
        stale.append(part)
    assert all(p.name.startswith(".scene.") for p in stale)
    assert remove_stale_temp_files(paths) == 3
    assert not any(p.exists() for p in stale) and video.read_bytes() == b"an older, complete video"


def test_replacing_a_render_forgets_its_inputs_record_and_fetched_copies(tmp_path: Path) -> None:
    """``--replace`` must not compare the new render's inputs with the old one's, nor reuse its downloads."""
    from pytti_engine.identity import RunIdentity, forget_previous_render

    paths = RunPaths(tmp_path)
    (tmp_path / "old.mp4").write_bytes(b"video")
    paths.inputs_json.write_text('{"format": 1, "inputs": [], "hashes": {}}')
    (tmp_path / "inputs").mkdir()
    (tmp_path / "inputs" / "abc123-init.png").write_bytes(b"png")
    (tmp_path / "frames").mkdir()
    (tmp_path / "frames" / "000001.png").write_bytes(b"frame")
    removed = forget_previous_render(paths, RunIdentity(scene="/scenes/old.yaml"))
    assert {"old.mp4", "inputs.json", "inputs/"} <= set(removed)
    assert not paths.inputs_json.exists() and not (tmp_path / "inputs").exists()
    assert (tmp_path / "frames" / "000001.png").is_file(), "frames are judged by their keys, not removed here"
