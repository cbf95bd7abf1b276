"""One engine step vs a bare open_clip forward+backward on the same cutouts (CPU, one process).

VQGAN (``--image-model vqgan``): the engine step (quantize, decode, cutouts, CLIP, backward through the
decoder, Adam, EMA) is compared with the bare CLIP step **plus** a bare decoder forward+backward
(``post_quant_conv`` + decoder of diffusers' ``VQModel``) on the same quantized latent; the model is
taming's imagenet architecture (ddconfig A, 16384 codes) with random weights, at ``--size`` (default 128
for VQGAN).

The engine step is :func:`pytti_engine.render.optimize_step`: decode the image model, 16 cutouts with
augmentation and noise, perceptor forward+backward, prompt loss, TV smoothing (0.02, PyTTI's default),
palette losses (limited palette), backward into the image model, Adam, projection. The baseline is
what the engine cannot avoid: ``encode_image`` forward + backward of an already-made, already-normalized
batch of the same cutouts (a leaf that requires grad), cosine loss to a text embedding; the same model
object (ViT-B-32, random weights, frozen). Phases alternate (bare, engine, bare, engine, ...) so drift
of the shared machine hits both; the medians are compared.

    .venv/bin/python bench/step.py [--image-model unlimited_palette|limited_palette|both|vqgan] [--rounds 12]

The last line is ``ratio: X`` = engine step / bare step (for ``both``: the larger), each the minimum
over its samples (``--stat median`` for medians; on a machine shared with other jobs the minimum is the
least disturbed measurement), by wall clock, or with ``--clock cpu`` by process CPU time (all threads), which a machine shared with other
jobs disturbs less; both are printed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
import torch.nn.functional as F

PROMPT = "a lighthouse in a storm"


@dataclass(frozen=True)
class Prompt:
    """A resolved prompt (what the renderer reads)."""

    text: str
    weight: float
    stop: float | None = None
    image: str | None = None
    mask: Any = None

    def weight_at(self, step: int) -> float:
        """The weight at a step (constant here)."""
        return self.weight

    def stop_at(self, step: int) -> float | None:
        """The stop at a step (constant here)."""
        return self.stop


@dataclass(frozen=True)
class Frame:
    """One frame of a plan (what the renderer reads)."""

    index: int
    prompts: tuple[Prompt, ...] = field(default_factory=lambda: (Prompt(PROMPT, 1.0),))
    translate_x: float = 0.0
    translate_y: float = 0.0
    rotate_2d: float = 0.0
    zoom: float = 1.0


def vit_b_32(device: torch.device) -> Any:
    """ViT-B-32 with random weights (seed 0) as a frozen :class:`Perceptor`."""
    import open_clip

    from pytti_engine.perceptors import Perceptor

    torch.manual_seed(0)
    model = open_clip.create_model("ViT-B-32", pretrained=None).to(device).eval().requires_grad_(False)
    cfg = model.visual.preprocess_cfg
    return Perceptor(
        name="ViT-B-32:random",
        identity="ViT-B-32:random",
        model=model,
        input_size=224,
        mean=tuple(cfg["mean"]),
        std=tuple(cfg["std"]),
        tokenizer=open_clip.get_tokenizer("ViT-B-32"),
    )


def imagenet_vqgan(device: torch.device) -> Any:
    """taming's imagenet VQGAN architecture (ddconfig A, 16384 x 256 codebook) with random weights."""
    from pathlib import Path

    from pytti_engine.image_params.vqgan import VQGANModel, build_network
    from pytti_engine.vqgan_files import VQGANConfig, VQGANFiles

    ddconfig = {
        **{"double_z": False, "z_channels": 256, "resolution": 256, "in_channels": 3, "out_ch": 3},
        **{"ch": 128, "ch_mult": [1, 1, 2, 2, 4], "num_res_blocks": 2, "attn_resolutions": [16]},
    }
    config = VQGANConfig("taming.models.vqgan.VQModel", "vq", "", ddconfig, 16384, 256)
    torch.manual_seed(0)
    net = build_network(config).to(device).eval().requires_grad_(False)
    files = VQGANFiles("imagenet", Path("-"), Path("-"), "bench")
    return VQGANModel(files, config, net, None, {"vqgan_model": "imagenet"}, stand_in=True)


def make_context(
    perceptor: Any, image_model: str, *, size: int, cutouts: int, device: torch.device, vqgan: Any = None
) -> Any:
    """A render context for one perceptor and one text prompt (PyTTI's default settings otherwise)."""
    from pytti_engine.image_params import ImageConfig
    from pytti_engine.prompts import embed_prompts
    from pytti_engine.render import VQGAN_EMA_DECAY, RenderContext, RenderSettings

    is_vqgan = image_model == "vqgan"
    image = ImageConfig(
        image_model=image_model,  # type: ignore[arg-type]
        width=size,
        height=size,
        ema_decay=VQGAN_EMA_DECAY if is_vqgan else None,
        vqgan_model="imagenet" if is_vqgan else None,
    )
    settings = RenderSettings(
        image=image,
        seed=0,
        steps_per_frame=1,
        learning_rate=0.1 if is_vqgan else 0.02,
        cutouts=cutouts,
        cut_pow=2.0,
        animation="off",
        infill_mode="wrap",
        sampling_mode="bilinear",
        smoothing_weight=0.02,
    )
    targets = embed_prompts([perceptor], [PROMPT])
    return RenderContext(settings, (perceptor,), (1.0,), targets, device, vqgan=vqgan)


def bare_decode_fn(vqgan: Any, state: Any) -> Callable[[], None]:
    """A bare VQGAN decoder forward+backward on the engine's quantized latent (no quantization search)."""
    z_q = vqgan.nearest(state.image.z.detach()).requires_grad_(True)

    def step() -> None:
        z_q.grad = None
        out = vqgan.net.decoder(vqgan.net.post_quant_conv(z_q))
        out.backward(torch.full_like(out, 1e-3))

    return step


def bare_step_fn(perceptor: Any, ctx: Any, state: Any, *, channels_last: bool = False) -> Callable[[], None]:
    """A bare open_clip forward+backward on a ready, normalized batch of the engine's cutouts (in
    channels-last memory order when asked)."""
    from pytti_engine.cutouts import sample_cutouts
    from pytti_engine.devices import make_generator

    gen = make_generator(0, 99, "bare", device=ctx.device)
    with torch.no_grad():
        cuts = sample_cutouts(state.image.decode(), ctx.settings.cutout_config(224), gen).images
        mean = torch.tensor(perceptor.mean, device=cuts.device).view(1, 3, 1, 1)
        std = torch.tensor(perceptor.std, device=cuts.device).view(1, 3, 1, 1)
        layout = torch.channels_last if channels_last else torch.contiguous_format
        batch = ((cuts - mean) / std).contiguous(memory_format=layout)
    x = batch.clone().requires_grad_(True)
    text = ctx.targets.embeds[0]

    def step() -> None:
        x.grad = None
        emb = F.normalize(perceptor.model.encode_image(x), dim=-1)
        (1 - emb @ text.T).mean().backward()

    return step


def engine_step_fn(ctx: Any) -> tuple[Callable[[], None], Any]:
    """One engine optimizer step (and the state it advances)."""
    from pytti_engine.devices import make_generator
    from pytti_engine.render import initial_state, optimize_step

    state = initial_state(ctx)
    gen = make_generator(0, 1, "steps", device=ctx.device)
    frame = Frame(index=1)

    def step() -> None:
        optimize_step(state, frame, ctx, gen)

    return step, state


def timed(fn: Callable[[], None], sync: Callable[[], None] = lambda: None) -> float:
    """Wall seconds for one call."""
    return timed_both(fn, sync)[0]


def timed_both(fn: Callable[[], None], sync: Callable[[], None] = lambda: None) -> tuple[float, float]:
    """(wall seconds, process CPU seconds over all threads) for one call."""
    sync()
    start, cpu = time.perf_counter(), time.process_time()
    fn()
    sync()
    return time.perf_counter() - start, time.process_time() - cpu


def main() -> None:
    """Run the benchmark and print the ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--image-model", default="both", choices=["unlimited_palette", "limited_palette", "both", "vqgan"]
    )
    parser.add_argument("--rounds", type=int, default=12, help="alternating rounds (the first is warm-up)")
    parser.add_argument("--reps", type=int, default=1, help="steps per phase per round")
    parser.add_argument("--size", type=int, default=None, help="image side (default 256; vqgan: 128)")
    parser.add_argument("--cutouts", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--stat",
        default="min",
        choices=["min", "median"],
        help="min: the least disturbed sample of each phase (a shared machine); median",
    )
    parser.add_argument(
        "--clock",
        default="wall",
        choices=["wall", "cpu"],
        help="which clock the last line uses (cpu: a busy machine)",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    models = ["unlimited_palette", "limited_palette"] if args.image_model == "both" else [args.image_model]
    size = args.size or (128 if args.image_model == "vqgan" else 256)
    perceptor = vit_b_32(device)
    vqgan = imagenet_vqgan(device) if args.image_model == "vqgan" else None
    phases: dict[str, Callable[[], None]] = {}
    for name in models:
        ctx = make_context(perceptor, name, size=size, cutouts=args.cutouts, device=device, vqgan=vqgan)
        phases[name], state = engine_step_fn(ctx)
        if "bare" not in phases:
            phases["bare"] = bare_step_fn(perceptor, ctx, state)
        if vqgan is not None:
            phases["bare_decode"] = bare_decode_fn(vqgan, state)
    times: dict[str, list[float]] = {name: [] for name in phases}
    cpu: dict[str, list[float]] = {name: [] for name in phases}
    order = ["bare", *(["bare_decode"] if vqgan is not None else []), *models]
    for r in range(args.rounds):
        for name in order:
            for _ in range(args.reps):
                wall, used = timed_both(phases[name])
                if r > 0:
                    times[name].append(wall)
                    cpu[name].append(used)
        done = [n for n in order if times[n]]
        print(
            f"round {r + 1}/{args.rounds}: "
            + ", ".join(f"{n} {times[n][-1]:.3f}s ({cpu[n][-1]:.3f}s CPU)" for n in done),
            flush=True,
        )
    stat = min if args.stat == "min" else statistics.median
    print(f"statistic: {args.stat} of {len(times['bare'])} alternating samples per phase")
    bare, bare_cpu = stat(times["bare"]), stat(cpu["bare"])
    print(f"bare open_clip ViT-B-32 fwd+bwd, {args.cutouts} cutouts: {bare:.3f} s wall, {bare_cpu:.3f} s CPU")
    if vqgan is not None:
        dec, dec_cpu = stat(times["bare_decode"]), stat(cpu["bare_decode"])
        print(f"bare VQGAN decoder fwd+bwd at {size}x{size}: {dec:.3f} s wall, {dec_cpu:.3f} s CPU")
        bare, bare_cpu = bare + dec, bare_cpu + dec_cpu
    ratios = {}
    for name in models:
        step, step_cpu = stat(times[name]), stat(cpu[name])
        ratios[name] = (step / bare, step_cpu / bare_cpu)
        print(
            f"engine step {name}: {step:.3f} s wall, {step_cpu:.3f} s CPU; "
            f"ratio {ratios[name][0]:.3f} wall, {ratios[name][1]:.3f} CPU"
        )
    pick = 1 if args.clock == "cpu" else 0
    print(f"ratio: {max(r[pick] for r in ratios.values()):.3f}")


if __name__ == "__main__":
    main()
