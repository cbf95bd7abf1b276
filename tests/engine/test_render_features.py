"""Engine features end to end on the tiny stand-in perceptor (32², <= 4 cutouts, few steps, CPU)."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from PIL import Image

from pytti_engine import render as render_module
from pytti_engine.checkpoints import CheckpointMeta, load_checkpoint, save_checkpoint
from pytti_engine.cutouts import CutoutConfig
from pytti_engine.errors import SceneError
from pytti_engine.io import load_image, png_bytes
from pytti_engine.job import build_context, check_renderable
from pytti_engine.render import FrameResult, OutOfMemoryError, RenderContext, StepEvent, render_frames
from pytti_engine.scene import Plan, build_plan, load_scene

CPU = torch.device("cpu")
MOVING = 'animation: 2d\ntranslate_x: "2 * sin(t)"\nrotate_2d: 3\nzoom: 1.04\n'


def _setup(write_scene: Callable[..., Path], body: str, **kw: int) -> tuple[Plan, RenderContext]:
    scene = load_scene(write_scene(body, **kw))
    plan = build_plan(scene)
    return plan, build_context(scene, plan, CPU)


def _render(plan: Plan, ctx: RenderContext) -> list[FrameResult]:
    out: list[FrameResult] = []
    render_frames(plan.frames, ctx, on_frame=out.append)
    return out


def _picture(path: Path, colour: tuple[int, int, int], half: tuple[int, int, int] | None = None) -> Path:
    im = Image.new("RGB", (32, 32), colour)
    if half is not None:
        im.paste(half, (16, 0, 32, 32))
    im.save(path)
    return path


@pytest.mark.parametrize(
    "body",
    [
        MOVING + "pixel_size: 2\nema_decay: 0.9\n",
        pytest.param(  # ~10 s; the palette state round trip stays in the default tier (test_image_params)
            MOVING + "image_model: limited_palette\npalettes: 4\nema_decay: 0.8\nreset_lr_each_frame: true\n",
            marks=pytest.mark.slow,
        ),
    ],
    ids=["rgb-pixel2-ema", "palette-ema-reset"],
)
def test_resume_from_checkpoint_10_is_byte_identical(
    write_scene: Callable[..., Path], tmp_path: Path, body: str
) -> None:
    """Frames 1-10, checkpoint, then 11-20 == frames 1-20 in one go (CPU), for each image model."""
    plan, ctx = _setup(write_scene, body, frames=20, steps=1)
    ckpt = tmp_path / "000010.pt"
    straight: list[bytes] = []

    def keep(result: FrameResult) -> None:
        straight.append(png_bytes(result.image))
        if result.state.frame == 10:  # what the flow does after frame 10
            meta = CheckpointMeta(frame=10, step=result.state.step, key="k", png_sha256="x")
            save_checkpoint(ckpt, result.state, meta)

    render_frames(plan.frames, ctx, on_frame=keep)
    resumed, _ = load_checkpoint(ckpt, learning_rate=ctx.settings.learning_rate, device=CPU)
    assert resumed.frame == 10 and resumed.image.kind == ctx.settings.image_config.image_model.replace(
        "unlimited_palette", "rgb"
    )
    tail: list[bytes] = []
    render_frames(plan.frames[10:], ctx, state=resumed, on_frame=lambda r: tail.append(png_bytes(r.image)))
    assert tail == straight[10:]


def test_limited_palette_render_uses_at_most_palette_size_times_palettes_colours(
    write_scene: Callable[..., Path],
) -> None:
    body = "image_model: limited_palette\npalette_size: 3\npalettes: 2\nrandom_initial_palette: true\n"
    plan, ctx = _setup(write_scene, body, frames=2, steps=2)
    for result in _render(plan, ctx):
        pixels = result.image[0].reshape(3, -1).T
        assert len(torch.unique(pixels, dim=0)) <= 3 * 2


def test_image_prompts_and_masks_are_embedded_once(write_scene: Callable[..., Path], tmp_path: Path) -> None:
    _picture(tmp_path / "ref.png", (200, 30, 30))
    _picture(tmp_path / "mask.png", (0, 0, 0), half=(255, 255, 255))
    prompts = "[ref.png]:1 | a cat:1_l | a dog:0.5_[mask.png] | fog:0.5_[-mask.png]:0.1 | sky:1_a tree_0.5 | sea:1_a tree"
    body = f'scenes:\n  - prompts: "{prompts}"\n    frames: 2\n'
    plan, ctx = _setup(write_scene, body, steps=2)
    assert set(ctx.targets.images) == {str(tmp_path / "ref.png")}
    assert len(ctx.targets.masks) == 2 and "a tree" in ctx.targets.texts
    assert all(math.isfinite(r.loss) for r in _render(plan, ctx))


MASKS = {  # kind: (the prompt steered to the left half, the same steered to the right half)
    "position": ("[red.png]:1_l | a green square:1_r", "[red.png]:1_r | a green square:1_l"),
    "image": (
        "[red.png]:1_[half.png] | a green square:1_[-half.png]",
        "[red.png]:1_[-half.png] | a green square:1_[half.png]",
    ),
    "video": (
        "[red.png]:1_[half.mp4] | a green square:1_[-half.mp4]",
        "[red.png]:1_[-half.mp4] | a green square:1_[half.mp4]",
    ),
    # on a picture green on the left, blue on the right: act only where the cutout looks like the mask text
    "text": ("[red.png]:1_a green square_0", "[red.png]:1_a blue square_0"),
}


@pytest.mark.usefixtures("torch_one_thread")
@pytest.mark.parametrize("kind", sorted(MASKS))
def test_image_prompts_and_every_mask_kind_render(
    tmp_path: Path, toy_dir: Path, load_cached: Callable[..., object], kind: str
) -> None:
    """An image prompt of a red picture pulls toward red only where its mask says: steering the mask to
    the other half moves the red there (the trained toy perceptor, from a flat start)."""
    from pytti_engine.video import EncodeSettings, assemble_video
    from tests.toy_support import greenness, half_mask, redness, render, start_image, toy_scene

    _picture(tmp_path / "red.png", (230, 20, 20))
    half_mask(tmp_path / "half.png", 64)  # white on the left
    if kind == "video":
        settings = EncodeSettings(fps=12, crf=0, preset="ultrafast", pix_fmt="yuv444p")
        assemble_video([tmp_path / "half.png"] * 2, tmp_path / "half.mp4", settings)
    body = "cut_pow: 3\n"
    if kind == "text":
        halves = Image.new("RGB", (64, 64), (40, 170, 40))
        halves.paste((40, 60, 200), (32, 0, 64, 64))
        halves.save(tmp_path / "halves.png")
        body += "init_image: halves.png\n"
    balance = []
    for prompts in MASKS[kind]:
        path = toy_scene(tmp_path / "masked.yaml", toy_dir, prompts, size=64, steps=8, body=body)
        start = start_image(path, load_cached)
        ctx, results = render(path, load_cached)
        assert set(ctx.targets.images) == {str(tmp_path / "red.png")}
        picture, third = results[-1].image, 64 // 3

        def red(now: torch.Tensor, before: torch.Tensor) -> float:  # red gained, minus green gained
            return redness(now) - redness(before) - (greenness(now) - greenness(before))

        left, right = slice(None, third), slice(-third, None)
        balance.append(
            red(picture[..., left], start[..., left]) - red(picture[..., right], start[..., right])
        )
    assert balance[0] > 0.05 and balance[1] < -0.05, balance


@pytest.mark.usefixtures("torch_one_thread")
def test_two_perceptors_with_weights(
    tmp_path: Path, toy_dir: Path, load_cached: Callable[..., object]
) -> None:
    """The toy perceptor and a copy that reads "red" as "green" guide one prompt: their weights decide
    which colour wins."""
    from tests.toy_support import colour_swapped_toy, greenness, redness, render, toy_scene

    swapped = colour_swapped_toy(toy_dir, tmp_path / "swapped")
    pictures = {}
    for name, (w_toy, w_swapped) in {"toy": (1.0, 0.25), "even": (1.0, 1.0), "swapped": (0.25, 1.0)}.items():
        body = (
            "perceptors:\n"
            f'  - {{model: "local-dir:{toy_dir}", weight: {w_toy}}}\n'
            f'  - {{model: "local-dir:{swapped}", weight: {w_swapped}}}\n'
        )
        path = toy_scene(tmp_path / f"{name}.yaml", toy_dir, "a red square", steps=8, body=body)
        path.write_text(
            path.read_text().replace(f'perceptors:\n  - {{model: "local-dir:{toy_dir}"}}\n', "", 1)
        )
        ctx, results = render(path, load_cached)
        assert len(ctx.perceptors) == 2 and ctx.perceptor_weights == (w_toy, w_swapped)
        assert len(ctx.targets.embeds) == 2
        pictures[name] = results[-1].image
    red = {name: redness(p) - greenness(p) for name, p in pictures.items()}
    assert red["toy"] > 0.2 and red["swapped"] < -0.2, red  # each perceptor wins when it weighs more
    assert red["toy"] > red["even"] > red["swapped"], red  # and an even mix lies between


def test_direct_image_prompt_converges_toward_the_picture(
    write_scene: Callable[..., Path], tmp_path: Path
) -> None:
    """A real end-to-end signal without trained CLIP: PSNR to the target rises well above the start."""
    target_path = _picture(tmp_path / "target.png", (230, 40, 60), half=(20, 90, 210))
    body = (
        "learning_rate: 0.05\nsmoothing_weight: 0\n"
        "direct_image_prompts:\n  - {image: target.png, weight: 1}\n"
        'scenes:\n  - prompts: "anything:0"\n    frames: 1\n'
    )
    plan, ctx = _setup(write_scene, body, steps=40)
    target = load_image(target_path, (32, 32))

    def psnr(image: torch.Tensor) -> float:
        return float(10 * torch.log10(1 / (image - target).square().mean()))

    from pytti_engine.render import initial_state

    before = psnr(initial_state(ctx).image.decode_output())
    after = psnr(_render(plan, ctx)[0].image)
    assert after > before + 10, (before, after)


@pytest.mark.usefixtures("torch_one_thread")
def test_init_image_losses_act(tmp_path: Path, toy_dir: Path, load_cached: Callable[..., object]) -> None:
    """From a green init image, a red prompt pulls away; the init losses hold the picture to the init:
    the direct one its pixels, the semantic one what the toy perceptor sees (green)."""
    from tests.toy_support import colour_scores, redness, render, toy_scene

    _picture(tmp_path / "init.png", (40, 160, 40))
    init = load_image(tmp_path / "init.png", (32, 32))
    pictures = {}
    for name, (direct, semantic) in {"free": (0, 0), "direct": (10, 0), "semantic": (0, 2)}.items():
        body = f"init_image: init.png\ndirect_init_weight: {direct}\nsemantic_init_weight: {semantic}\n"
        path = toy_scene(tmp_path / f"{name}.yaml", toy_dir, "a red square", steps=8, body=body)
        ctx, results = render(path, load_cached)
        assert (ctx.targets.init_direct is not None) == bool(direct)
        assert (ctx.targets.init_image is not None) == bool(semantic)
        pictures[name] = results[-1].image
    toy = load_cached(f"local-dir:{toy_dir}", None, CPU, None)
    distance = {name: float((p - init).square().mean()) for name, p in pictures.items()}
    assert redness(pictures["free"]) > 0.15  # the prompt alone moves far from the init
    assert distance["direct"] < 0.6 * distance["free"], distance
    green = {name: colour_scores(toy, p)["green"] for name, p in pictures.items()}
    assert green["semantic"] > green["free"] + 0.1, green


@pytest.mark.usefixtures("torch_one_thread")
def test_gradient_accumulation_and_border_mode_render(
    tmp_path: Path, toy_dir: Path, load_cached: Callable[..., object], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Accumulating 2 micro-batches of 2 cutouts gives exactly the gradient of one batch of the same 4;
    ``border_mode`` reaches the cutouts that overhang the edge."""
    import dataclasses

    from pytti_engine.cutouts import Cutouts
    from tests.toy_support import render, toy_scene

    real = render_module.sample_cutouts
    calls = [0]

    def same_four(image: torch.Tensor, config: CutoutConfig, gen: torch.Generator) -> Cutouts:
        full = real(image, dataclasses.replace(config, cutouts=4), torch.Generator().manual_seed(5))
        n = config.cutouts
        k = calls[0] % (4 // n)
        calls[0] += 1
        part = slice(k * n, (k + 1) * n)
        return Cutouts(full.images[part], full.offsets[part], full.sizes[part])

    moments = []
    with monkeypatch.context() as patch:
        patch.setattr(render_module, "sample_cutouts", same_four)
        for gas in (1, 2):
            body = f"gradient_accumulation_steps: {gas}\n"
            path = toy_scene(tmp_path / f"gas{gas}.yaml", toy_dir, "a red square", steps=1, body=body)
            ctx, results = render(path, load_cached)
            assert ctx.settings.cutout_config(32).cutouts == 4 // gas
            state = results[-1].state
            moments.append(state.optimizer.state[state.image.parameters()[0]]["exp_avg"])  # (1 - b1) * grad
    assert moments[0].abs().max() > 0
    torch.testing.assert_close(moments[1], moments[0], rtol=1e-4, atol=1e-9)

    def image(border_mode: str) -> torch.Tensor:
        body = f"border_mode: {border_mode}\ncutout_border: 0.25\n"
        path = toy_scene(tmp_path / f"{border_mode}.yaml", toy_dir, "a red square", steps=3, body=body)
        return render(path, load_cached)[1][-1].image

    assert torch.equal(image("mirror"), image("mirror"))  # deterministic
    assert not torch.equal(image("mirror"), image("clamp"))  # cutouts past the edge see other pixels


def test_reset_lr_each_frame_restarts_adam(write_scene: Callable[..., Path]) -> None:
    for reset, expected in ((True, 2.0), (False, 4.0)):
        plan, ctx = _setup(write_scene, f"reset_lr_each_frame: {str(reset).lower()}\n", frames=2, steps=2)
        state = render_frames(plan.frames, ctx)
        assert state is not None
        param = state.image.parameters()[0]
        assert float(state.optimizer.state[param]["step"]) == expected


def test_out_of_memory_names_the_settings(
    write_scene: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    plan, ctx = _setup(write_scene, "", frames=1, steps=1)

    def boom(*args: object, **kwargs: object) -> None:
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(render_module, "sample_cutouts", boom)
    with pytest.raises(OutOfMemoryError, match="gradient_accumulation_steps") as info:
        _render(plan, ctx)
    assert "cutouts: 2" in str(info.value) and "32x32" in str(info.value)


def test_urls_in_image_prompts_are_renderable(write_scene: Callable[..., Path]) -> None:
    body = 'scenes:\n  - prompts: "[https://example.org/a.png]:1"\n    frames: 1\n'
    plan = build_plan(load_scene(write_scene(body)))
    check_renderable(plan)  # fetched when the render starts (tests/engine/test_fetch.py)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("pixel_size: 3\n", "multiples of pixel_size"),
        ("gradient_accumulation_steps: 3\n", "must divide cutouts"),
        ("direct_init_weight: 1.0\n", "need an init_image"),
        ("lock_palette: true\n", "limited_palette"),
    ],
)
def test_engine_keys_are_checked_at_load(write_scene: Callable[..., Path], body: str, message: str) -> None:
    with pytest.raises(SceneError, match=message):
        load_scene(write_scene(body))


def test_checkpoints_written_before_image_configs_still_load(
    write_scene: Callable[..., Path], tmp_path: Path
) -> None:
    plan, ctx = _setup(write_scene, "", frames=1, steps=1)
    state = render_frames(plan.frames, ctx)
    assert state is not None
    ckpt = tmp_path / "old.pt"
    save_checkpoint(ckpt, state, CheckpointMeta(frame=1, step=1, key="k", png_sha256="x"))
    payload = torch.load(ckpt, weights_only=True)
    del payload["image_config"]  # the walking skeleton's format
    torch.save(payload, ckpt)
    resumed, _ = load_checkpoint(ckpt, learning_rate=0.02, device=CPU)
    assert torch.equal(resumed.image.decode_output(), state.image.decode_output())


def test_mixed_precision_is_a_no_op_on_the_cpu(write_scene: Callable[..., Path]) -> None:
    import contextlib

    _, ctx = _setup(write_scene, "mixed_precision: true\n", frames=1, steps=0)
    assert isinstance(render_module._autocast(ctx), contextlib.nullcontext)


def test_learning_rate_null_is_the_image_models_own(
    write_scene: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    from pytti_engine.image_params import PaletteImage, RGBImage
    from pytti_engine.render import initial_state

    assert load_scene(write_scene("learning_rate: 0.3\n")).learning_rate == 0.3
    scene = load_scene(write_scene("learning_rate: null\n"))
    assert scene.learning_rate is None and load_scene(write_scene()).learning_rate is None
    monkeypatch.setattr(PaletteImage, "default_learning_rate", 0.07)  # each model's own, read from the class
    for body, expected in (("", RGBImage.default_learning_rate), ("image_model: limited_palette\n", 0.07)):
        plan, ctx = _setup(write_scene, body, frames=1, steps=1)
        assert ctx.settings.learning_rate == expected
        assert initial_state(ctx).optimizer.param_groups[0]["lr"] == expected
    with pytest.raises(SceneError, match="learning_rate"):
        load_scene(write_scene("learning_rate: 0\n"))


@pytest.mark.usefixtures("torch_one_thread")
def test_pre_animation_steps_run_on_frame_1_before_the_first_move_at_negative_t(
    tmp_path: Path, toy_dir: Path, load_cached: Callable[..., object]
) -> None:
    """A prompt whose weight is ``max(0, -t)`` acts only while ``t < 0``: in the pre-animation steps."""
    from tests.toy_support import redness, render, start_image, toy_scene

    body = "animation: 2d\ntranslate_x: 3\ninfill_mode: wrap\n"
    runs = {}
    for pre in (0, 6):
        path = toy_scene(
            tmp_path / f"pre{pre}.yaml",
            toy_dir,
            "a red square:max(0, -t) * 50",
            steps=3,
            frames=2,
            body=body + f"pre_animation_steps: {pre}\n",
        )
        events: list[StepEvent] = []
        ctx, results = render(path, load_cached, on_step=events.append)
        runs[pre] = (ctx, results, [(e.frame, e.step, e.steps) for e in events])
    start = start_image(tmp_path / "pre0.yaml", load_cached)
    (ctx0, plain, steps0), (ctx6, pre, steps6) = runs[0], runs[6]
    assert steps0 == [(1, 1, 3), (1, 2, 3), (1, 3, 3), (2, 1, 3), (2, 2, 3), (2, 3, 3)]
    assert steps6 == [(1, k, 9) for k in range(1, 10)] + [(2, k, 3) for k in range(1, 4)]
    assert (plain[-1].state.step, pre[-1].state.step) == (6, 12)
    # without pre-animation the weight is 0 at every step (t >= 0): nothing moves
    assert torch.equal(plain[0].image, start)
    # with it, frame 1 was pulled toward red before anything moved, and frame 2 is frame 1 moved
    assert redness(pre[0].image) > 0.1
    moved = torch.roll(pre[0].image, shifts=3, dims=-1)
    assert torch.allclose(pre[1].image, moved, atol=1e-5)
    # the frame keys know: the fingerprint carries the setting only when it is set
    assert ctx6.settings.fingerprint()["pre_animation_steps"] == 6
    assert "pre_animation_steps" not in ctx0.settings.fingerprint()
