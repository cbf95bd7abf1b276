"""The trained toy perceptor (pytti_engine.toy), and what prompts do to a picture, measured with it.

Every render here starts from a flat grey picture, so a change is the prompts' doing; effects are read
from colour statistics and from the toy model's own score of the picture.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from pytti_engine.errors import ModelLoadError
from pytti_engine.perceptors import Perceptor, load_perceptor
from pytti_engine.toy import (
    ToyTraining,
    cached_toy,
    draw_toy_pictures,
    read_toy_report,
    toy_captions,
    toy_key,
    train_toy_clip,
)
from tests.toy_support import (
    CPU,
    colour_scores,
    greenness,
    redness,
    render,
    start_image,
    toy_scene,
)

pytestmark = pytest.mark.usefixtures("torch_one_thread")
Loader = Callable[[str, str | None, torch.device, bool | None], Perceptor]


@pytest.fixture
def toy(toy_dir: Path, load_cached: Loader) -> Perceptor:
    return load_cached(f"local-dir:{toy_dir}", None, CPU, None)


def test_the_toy_perceptor_loads_like_real_weights_and_knows_its_colours(
    toy_dir: Path, toy: Perceptor
) -> None:
    config = json.loads((toy_dir / "open_clip_config.json").read_text())
    assert config["model_cfg"]["vision_cfg"]["image_size"] == 32 and config["pytti"]["toy"] is True
    report = read_toy_report(toy_dir)
    assert report is not None and report.colour_accuracy >= ToyTraining().target_accuracy
    fresh = load_perceptor(f"local-dir:{toy_dir}")  # the path real local-dir weights take
    assert fresh.identity == toy.identity and fresh.identity.startswith("local-dir:sha256=")
    assert (fresh.input_size, fresh.tokenizer(["a red square"]).shape) == (32, (1, 8))
    # zero-shot, through the Perceptor API, on pictures it never saw
    images, labels = draw_toy_pictures(64, torch.Generator().manual_seed(12345))
    with torch.no_grad():
        guesses = (toy.encode_image(images) @ toy.encode_text(toy_captions()).T).argmax(dim=1)
    assert float((guesses // 2 == labels // 2).float().mean()) >= 0.9


def test_training_is_deterministic_keyed_and_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    quick = ToyTraining(chunk_steps=2, max_steps=2, target_accuracy=0.0, eval_pictures=8)
    first, report = train_toy_clip(quick)
    second, _ = train_toy_clip(quick)
    assert report.steps == 2
    for (name, a), (_, b) in zip(first.state_dict().items(), second.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    assert toy_key(quick) != toy_key(ToyTraining()) and toy_key(quick) == toy_key(quick)
    folder = cached_toy(tmp_path, quick)
    assert folder.name == f"toy-clip-{toy_key(quick)[:16]}" and read_toy_report(folder) is not None
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no scratch folder left behind

    def no_training(*args: object) -> None:
        raise AssertionError("a cached toy perceptor must not be trained again")

    with monkeypatch.context() as patch:
        patch.setattr("pytti_engine.toy.train_toy_clip", no_training)
        assert cached_toy(tmp_path, quick) == folder
    with pytest.raises(ModelLoadError, match="colour accuracy"):
        train_toy_clip(ToyTraining(chunk_steps=1, max_steps=1, target_accuracy=1.01, eval_pictures=8))


def test_a_prompt_pulls_the_picture_toward_it(
    tmp_path: Path, toy_dir: Path, toy: Perceptor, load_cached: Loader
) -> None:
    start = start_image(toy_scene(tmp_path / "start.yaml", toy_dir, "a red square"), load_cached)
    before = colour_scores(toy, start)
    pictures = {}
    for colour in ("red", "green"):
        path = toy_scene(tmp_path / f"{colour}.yaml", toy_dir, f"a {colour} square", steps=8)
        pictures[colour] = render(path, load_cached)[1][-1].image
    red, green = colour_scores(toy, pictures["red"]), colour_scores(toy, pictures["green"])
    # the toy model's own score: the prompt's colour rises, and leads the other colours
    assert red["red"] > before["red"] + 0.3 and max(red, key=red.__getitem__) == "red"
    assert green["green"] > before["green"] + 0.3 and max(green, key=green.__getitem__) == "green"
    # colour statistics: from grey (0 redness) toward the prompt's colour, and apart from each other
    assert abs(redness(start)) < 0.01 and abs(greenness(start)) < 0.01
    assert redness(pictures["red"]) > 0.2 and redness(pictures["red"]) > redness(pictures["green"]) + 0.2
    assert (
        greenness(pictures["green"]) > 0.2 and greenness(pictures["green"]) > greenness(pictures["red"]) + 0.2
    )


def test_a_negative_prompt_pushes_away(
    tmp_path: Path, toy_dir: Path, toy: Perceptor, load_cached: Loader
) -> None:
    path = toy_scene(tmp_path / "away.yaml", toy_dir, "a red square:-1", steps=8)
    start = start_image(path, load_cached)
    picture = render(path, load_cached)[1][-1].image
    before, after = colour_scores(toy, start), colour_scores(toy, picture)
    assert after["red"] < before["red"] - 0.3 and min(after, key=after.__getitem__) == "red"
    assert redness(picture) < -0.05  # from grey, away from red: greener and bluer


def test_a_stop_ends_a_prompts_pull(tmp_path: Path, toy_dir: Path, load_cached: Loader) -> None:
    """A positive prompt pulls only while its distance is above the stop."""

    def run(prompt: str) -> tuple[torch.Tensor, list[float]]:
        distances: list[float] = []  # the prompt's mean cutout distance at every step (weight 1)
        path = toy_scene(tmp_path / "stop.yaml", toy_dir, prompt, steps=10)
        _, results = render(
            path, load_cached, on_step=lambda e: distances.append(e.losses["prompt/a red square"])
        )
        return results[-1].image, distances

    start = start_image(toy_scene(tmp_path / "start.yaml", toy_dir, "a red square"), load_cached)
    free, free_distances = run("a red square")
    begun, reached = free_distances[0], free_distances[-1]
    assert reached < begun - 0.3 and redness(free) > 0.2
    # a stop above every distance: no pull at all, not one pixel moves
    still, _ = run("a red square:1:10")
    assert torch.equal(still, start)
    # a stop halfway: the pull ends once the distance is below it (Adam's momentum still carries the
    # picture a little further), so the picture ends clearly less red than the free run
    held, held_distances = run(f"a red square:1:{(begun + reached) / 2:.4f}")
    assert held_distances[0] == pytest.approx(begun)
    assert 0.02 < redness(held) < redness(free) - 0.05, (redness(held), redness(free))
