"""Per-frame bookkeeping of the render flow (issue 13.2): progress is published from a thread (the
newest frame wins, the last is always shown), and a frame's state reaches the next frame in memory,
byte-identical (frames and checkpoints) to reading it back from its checkpoint."""

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import tasks.publish as publish
import tasks.render as render_module
from flows.render_scene import RenderParams, render_scene
from tasks.publish import ProgressPublisher, ProgressRef, due_updates
from tasks.records import FrameRecord, RunRef
from tasks.resident import HeldState, StateSlot

MOVING = 'animation: 2d\ntranslate_x: 2\nrotate_2d: "3 * t"\n'


@pytest.mark.parametrize(
    ("shown", "newest", "view_wanted", "since_progress", "since_view", "closing", "expected"),
    [
        (0, 0, False, 9.0, 9.0, False, (False, False, None)),  # nothing finished yet
        (0, 1, False, 9.0, 9.0, False, (True, False, None)),  # first frame, bar idle long enough
        (3, 4, False, 0.2, 9.0, False, (False, False, 0.3)),  # too soon after the last update: held back
        (3, 10, False, 0.2, 9.0, False, (True, False, None)),  # the last frame is shown at once
        (3, 4, False, 0.2, 9.0, True, (True, False, None)),  # closing: what is pending goes out now
        (4, 4, True, 0.0, 9.0, False, (False, True, None)),  # view wanted and due
        (4, 4, True, 0.0, 1.0, False, (False, False, 4.0)),  # view wanted, rebuilt 1 s ago: wait 4 s
        (3, 4, True, 0.1, 1.0, False, (False, False, 0.4)),  # the sooner of the two deadlines
        (4, 4, True, 0.0, 1.0, True, (False, True, None)),  # closing sends the wanted view
    ],
)
def test_due_updates_throttles_and_always_shows_the_last_frame(
    shown: int,
    newest: int,
    view_wanted: bool,
    since_progress: float,
    since_view: float,
    closing: bool,
    expected: tuple[bool, bool, float | None],
) -> None:
    due = due_updates(
        shown,
        newest,
        10,
        view_wanted,
        since_progress,
        since_view,
        closing=closing,
        progress_interval_s=0.5,
        view_interval_s=5.0,
    )
    assert (due.progress, due.view) == expected[:2]
    assert due.wait_s == pytest.approx(expected[2]) if expected[2] is not None else due.wait_s is None


def _run(frames: int) -> RunRef:
    return RunRef(
        run_dir="/nonexistent",
        scene_path="x.yaml",
        device="cpu",
        frame_count=frames,
        video_stem="x",
        scene_sha256="0",
    )


def _record(index: int) -> FrameRecord:
    return FrameRecord(index=index, png=f"{index}.png", png_sha256="0", key=str(index))


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, list[int]]]:
    """Record what a publisher sends instead of calling the API; every send takes 50 ms."""
    calls: dict[str, list[int]] = {"progress": [], "view": []}
    lock = threading.Lock()

    def fake(kind: str) -> Callable[[RunRef, ProgressRef, FrameRecord], None]:
        def send(run: RunRef, ref: ProgressRef, record: FrameRecord) -> None:
            time.sleep(0.05)
            with lock:
                calls[kind].append(record.index)

        return send

    monkeypatch.setattr(publish, "publish_progress", fake("progress"))
    monkeypatch.setattr(publish, "publish_latest_view", fake("view"))
    yield calls


def test_the_frame_chain_never_waits_and_the_newest_frame_wins(sent: dict[str, list[int]]) -> None:
    run = _run(40)
    started = time.perf_counter()
    with ProgressPublisher(run, ProgressRef("p", "l"), every=5) as publisher:
        for index in range(1, 41):
            publisher.frame_done(_record(index))
        queued = time.perf_counter() - started
    # 40 frames queued in far less than one 50 ms send each (2 s): the sends happen in the thread
    assert queued < 1.0, queued
    progress, view = sent["progress"], sent["view"]
    assert progress[-1] == 40 and view[-1] == 40, "the last frame is always shown"
    assert progress == sorted(set(progress)) and len(progress) <= 3, progress  # coalesced, in order
    assert view == sorted(set(view)) and len(view) <= 2, view  # rebuilt at most every 5 s


def test_a_publisher_whose_artifacts_were_not_created_sends_nothing(sent: dict[str, list[int]]) -> None:
    with ProgressPublisher(_run(2), None, every=1) as publisher:
        publisher.frame_done(_record(1))
        publisher.frame_done(_record(2))
    assert sent == {"progress": [], "view": []}


def test_a_failed_render_still_shows_its_last_finished_frame(sent: dict[str, list[int]]) -> None:
    with (
        pytest.raises(RuntimeError),
        ProgressPublisher(_run(10), ProgressRef("p", "l"), every=5) as publisher,
    ):
        for index in (1, 2, 3):
            publisher.frame_done(_record(index))
        raise RuntimeError("frame 4 failed")
    assert sent["progress"][-1] == 3


def test_a_stopped_render_does_not_wait_for_a_slow_api(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(publish, "publish_progress", lambda run, ref, record: time.sleep(8))
    started = time.perf_counter()
    with (
        pytest.raises(KeyboardInterrupt),
        ProgressPublisher(_run(10), ProgressRef("p", "l"), every=5) as publisher,
    ):
        publisher.frame_done(_record(1))
        raise KeyboardInterrupt
    assert time.perf_counter() - started < publish.STOP_JOIN_S + 2.5


def test_the_state_slot_hands_over_once_and_only_the_matching_frame() -> None:
    slot = StateSlot()
    held = HeldState(index=2, key="k2", checkpoint_sha256="c2", state=object())  # type: ignore[arg-type]
    slot.put(held)
    assert slot.take(2, "k2") is None, "a closed slot (no render has it open) keeps nothing"
    slot.set_open(True)
    slot.put(held)
    assert slot.take(2, "other key") is None
    assert slot.take(2, "k2") is None, "take empties the slot, even when it does not match"
    slot.put(held)
    assert slot.take(2, "k2") is held
    assert slot.take(2, "k2") is None, "a retry of the same frame reads the checkpoint"
    slot.put(held)
    slot.set_open(False)
    assert slot.take(2, "k2") is None, "closing drops the held state"


def test_frames_continue_in_memory_byte_identical_to_reading_their_checkpoints(
    write_scene: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, torch_one_thread: None
) -> None:
    real_load = render_module.load_checkpoint
    loads: list[Path] = []

    def counting_load(path: Path, **kw: Any) -> Any:
        loads.append(path)
        return real_load(path, **kw)

    monkeypatch.setattr(render_module, "load_checkpoint", counting_load)
    scene = write_scene(MOVING, frames=3, size=16, steps=2)
    render_scene(RenderParams(scene_path=str(scene), out_dir=str(tmp_path / "memory"), device="cpu"))
    assert loads == [], "frames 2 and 3 continue from the state in memory"

    monkeypatch.setattr(render_module, "state_slot", lambda run: StateSlot())  # never open: always read back
    render_scene(RenderParams(scene_path=str(scene), out_dir=str(tmp_path / "disk"), device="cpu"))
    assert [p.name for p in loads] == ["000001.pt", "000002.pt"]
    for folder, pattern in (("frames", "*.png"), ("checkpoints", "*.pt")):
        memory = {p.name: p.read_bytes() for p in sorted((tmp_path / "memory" / folder).glob(pattern))}
        disk = {p.name: p.read_bytes() for p in sorted((tmp_path / "disk" / folder).glob(pattern))}
        assert len(memory) == 3 and memory == disk, folder


def test_preview_frames_reduced_to_a_palette_before_enlarging_give_the_same_gif(tmp_path: Path) -> None:
    import io

    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    paths = []
    for i in range(3):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray((rng.random((16, 16, 3)) * 255).astype("uint8")).save(paths[-1])

    def gif(images: list[Image.Image]) -> bytes:
        buf = io.BytesIO()
        images[0].save(buf, format="GIF", save_all=True, append_images=images[1:], duration=80, loop=0)
        return buf.getvalue()

    quick = [publish._fit(p, 256, enlarge=True, palette=True) for p in paths]
    assert [(im.mode, im.size) for im in quick] == [("P", (256, 256))] * 3, (
        "quantized at 16 px, then enlarged"
    )
    assert gif(quick) == gif([publish._fit(p, 256, enlarge=True) for p in paths])
