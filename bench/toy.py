"""The toy perceptor: cold training time, what a colour prompt does, and guidance steps on 1 vs N threads.

1. Trains the toy perceptor (``pytti_engine.toy.write_toy``, default settings) into a temporary folder
   and prints the training report (steps, seconds, zero-shot accuracies).
2. Renders ``a red square`` from a flat grey 32² picture (4 cutouts, 8 steps, lr 0.05, no smoothing) and
   prints the mean colour before and after, and the toy model's best caption.
3. Times the same engine steps with one intra-op thread and with torch's default thread count,
   alternating the two (one, default, one, default, ...) so drift of a shared machine hits both, and
   prints ``ratio: X`` = default-thread step / one-thread step (minimum over the rounds). The tests
   that use the toy perceptor run with one thread (fixture ``torch_one_thread``) because of this ratio.

    .venv/bin/python bench/toy.py [--rounds 6] [--steps 10]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
from PIL import Image

SCENE = """\
width: 32
height: 32
fps: 12
seed: 3
steps_per_frame: {steps}
perceptors: [{{model: "local-dir:{model}"}}]
cutouts: 4
learning_rate: 0.05
smoothing_weight: 0
init_image: grey.png
scenes:
  - prompts: "a red square"
    frames: 1
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()

    from pytti_engine.job import build_context
    from pytti_engine.perceptors import load_perceptor
    from pytti_engine.render import initial_state, render_frames
    from pytti_engine.scene import build_plan, load_scene
    from pytti_engine.toy import toy_captions, write_toy

    threads = torch.get_num_threads()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        report = write_toy(root / "toy")
        print(
            f"training: {report.steps} steps in {report.seconds:.1f} s (one thread); zero-shot accuracy "
            f"{report.colour_accuracy:.1%} colour, {report.caption_accuracy:.1%} colour+shape"
        )
        toy = load_perceptor(f"local-dir:{root / 'toy'}")
        Image.new("RGB", (32, 32), (102, 102, 102)).save(root / "grey.png")

        def context(steps: int) -> tuple[Any, Any]:
            path = root / f"scene{steps}.yaml"
            path.write_text(SCENE.format(steps=steps, model=root / "toy"))
            scene = load_scene(path)
            plan = build_plan(scene)
            return plan, build_context(scene, plan, torch.device("cpu"), load=lambda m, p, d, q: toy)

        plan, ctx = context(8)
        start = initial_state(ctx).image.decode_output()
        state = render_frames(plan.frames, ctx)
        assert state is not None
        picture = state.image.decode_output()
        with torch.no_grad():
            scores = toy.encode_image(picture) @ toy.encode_text(toy_captions()).T
        mean = [round(float(v), 2) for v in picture.mean(dim=(0, 2, 3))]
        before = [round(float(v), 2) for v in start.mean(dim=(0, 2, 3))]
        print(
            f"'a red square', 8 steps: mean RGB {before} -> {mean}; best caption: {toy_captions()[int(scores.argmax())]!r}"
        )

        plan, ctx = context(args.steps)
        samples: dict[int, list[float]] = {1: [], threads: []}
        for _ in range(args.rounds):
            for count in (1, threads):
                torch.set_num_threads(count)
                began = time.perf_counter()
                render_frames(plan.frames, ctx)
                samples[count].append((time.perf_counter() - began) / args.steps)
        torch.set_num_threads(threads)
        one, many = min(samples[1]), min(samples[threads])
        print(
            f"guidance step (32², 4 cutouts): 1 thread {one * 1e3:.1f} ms, {threads} threads {many * 1e3:.1f} ms"
        )
        print(f"ratio: {many / one:.2f}")


if __name__ == "__main__":
    main()
