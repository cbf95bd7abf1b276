"""TensorBoard metrics: event files written from render events, read back with tensorboard's reader."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch

from pytti_engine.errors import PyttiError

pytest.importorskip("tensorboard", reason="the metrics extra (tensorboard) is not installed")

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from pytti_engine.metrics import MetricsWriter, open_metrics


@dataclass(frozen=True)
class Event:
    """A step event with the optional fields the writer reads."""

    frame: int
    step: int
    steps: int
    loss: float
    losses: dict[str, float] = field(default_factory=dict)
    learning_rate: float | None = None


def read_events(folder: Path) -> EventAccumulator:
    events = EventAccumulator(str(folder), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    return events


def test_losses_rate_timings_and_images_are_readable(tmp_path: Path) -> None:
    log_dir = tmp_path / "tensorboard"
    with MetricsWriter(log_dir, steps_per_frame=2, image_every=2, learning_rate=0.02) as metrics:
        for frame in (1, 2, 3):
            for step in (1, 2):
                loss = 1.0 / (frame * step)
                metrics.on_step(
                    Event(frame, step, 2, loss, {"a lighthouse": loss / 2, "stabilization/edge": 0.1})
                )
            metrics.on_frame(frame, seconds=0.5 * frame, image=torch.full((1, 3, 8, 8), 0.5), loss=loss)
    events = read_events(log_dir)
    tags = events.Tags()
    assert set(tags["scalars"]) == {
        "loss/total",
        "loss/a lighthouse",
        "loss/stabilization/edge",
        "learning_rate",
        "time/frame_seconds",
        "loss/frame_last",
    }
    total = events.Scalars("loss/total")
    assert [s.step for s in total] == [1, 2, 3, 4, 5, 6]
    assert total[3].value == pytest.approx(0.25)
    assert [s.value for s in events.Scalars("learning_rate")] == pytest.approx([0.02] * 6)
    assert [(s.step, s.value) for s in events.Scalars("time/frame_seconds")] == [(2, 0.5), (4, 1.0), (6, 1.5)]
    images = events.Images("image")
    assert [i.step for i in images] == [2, 4]  # frame 1 and every 2nd frame
    assert (images[0].width, images[0].height) == (8, 8)


def test_an_events_own_learning_rate_wins_and_nan_losses_are_skipped(tmp_path: Path) -> None:
    with MetricsWriter(tmp_path, steps_per_frame=1, learning_rate=0.02) as metrics:
        metrics.on_step(Event(1, 1, 1, float("nan"), learning_rate=0.5))
        metrics.on_frame(1, 0.1, image=np.zeros((4, 4, 3), np.uint8))
    events = read_events(tmp_path)
    assert "loss/total" not in events.Tags()["scalars"]
    assert [s.value for s in events.Scalars("learning_rate")] == [0.5]


def test_bad_images_are_refused(tmp_path: Path) -> None:
    with MetricsWriter(tmp_path, steps_per_frame=1) as metrics, pytest.raises(PyttiError, match="expected"):
        metrics.on_frame(1, 0.1, image=np.zeros((4, 4), np.uint8))
    with pytest.raises(PyttiError, match="image_every"):
        MetricsWriter(tmp_path, steps_per_frame=1, image_every=0)


def test_fed_from_a_real_render(write_scene: Callable[..., Path], tmp_path: Path) -> None:
    from pytti_engine.job import build_context
    from pytti_engine.render import render_frame
    from pytti_engine.scene import build_plan, load_scene

    assert open_metrics(tmp_path, load_scene(write_scene(frames=2, steps=3))) is None
    body = "tensorboard: true\ntensorboard_image_every: 5\npre_animation_steps: 2\n"
    scene = load_scene(write_scene(body, frames=2, steps=3))
    plan = build_plan(scene)
    ctx = build_context(scene, plan, torch.device("cpu"))
    state = None
    metrics = open_metrics(tmp_path, scene)
    assert metrics is not None
    with metrics:
        for frame in plan.frames:
            result = render_frame(state, frame, ctx, on_step=metrics.on_step)
            state = result.state
            metrics.on_frame(frame.index, result.seconds, result.image, result.loss)
    events = read_events(tmp_path / "tensorboard")
    # frame 1: 2 pre-animation steps + 3; frame 2: 3 -> one contiguous x axis
    assert [s.step for s in events.Scalars("loss/total")] == list(range(1, 9))
    assert [s.step for s in events.Scalars("time/frame_seconds")] == [5, 8]
    assert [s.value for s in events.Scalars("learning_rate")] == pytest.approx(
        [ctx.settings.learning_rate] * 8
    )
    assert len(events.Images("image")) == 1


def test_a_missing_tensorboard_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "tensorboard", None)  # makes `import tensorboard` fail
    with pytest.raises(PyttiError, match=r"pytti-flow\[metrics\]"):
        MetricsWriter(tmp_path, steps_per_frame=1)
