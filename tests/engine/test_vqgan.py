"""The VQGAN image model: taming checkpoints into diffusers' VQModel, quantization, encode/decode, warps,
LatentLoss, frame keys and exact resume (tiny random-weight models in taming's layout)."""

import copy
import os
import sys
import textwrap
import types
from pathlib import Path

import pytest
import torch

pytest.importorskip("diffusers")

from pytti_engine.checkpoints import CheckpointMeta, load_checkpoint, save_checkpoint
from pytti_engine.image_params import ImageConfig, make_image
from pytti_engine.image_params.vqgan import (
    _taming_keys,
    build_network,
    latent_loss,
    load_vqgan,
    read_state_dict,
    taming_to_diffusers,
    write_vqgan_stand_in,
)
from pytti_engine.io import png_bytes
from pytti_engine.job import build_context, plan_keys, render_fingerprint
from pytti_engine.motion import warp_2d_sized
from pytti_engine.render import RenderSettings, render_frame
from pytti_engine.scene import build_plan, load_scene_text
from pytti_engine.vqgan_files import VQGANConfig, VQGANFiles, find_vqgan_files
from pytti_engine.warps import Motion2D, warp_2d
from tests.engine.test_vqgan_files import DDCONFIG_A

KEYS_FILE = Path(__file__).parent / "data" / "vqgan-f16-keys.txt"
CONFIG_A = VQGANConfig(
    target="taming.models.vqgan.VQModel",
    kind="vq",
    prefix="",
    ddconfig=DDCONFIG_A,
    n_embed=16384,
    embed_dim=256,
)


def _reference_keys() -> dict[str, tuple[int, ...]]:
    """taming's own key list of a ddconfig-A VQModel (generated from taming's modules)."""
    out = {}
    for line in KEYS_FILE.read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        key, _, shape = line.partition(" ")
        out[key] = tuple(int(v) for v in shape.strip("()").split(",") if v.strip())
    return out


@pytest.fixture(scope="module")
def model(vqgan_models_dir: Path):
    return load_vqgan(find_vqgan_files("imagenet", vqgan_models_dir))


def test_every_ddconfig_a_key_maps_onto_diffusers_vqmodel() -> None:
    reference = _reference_keys()
    assert len(reference) == 343
    assert sorted(_taming_keys(CONFIG_A)) == sorted(reference)  # the stand-in writer's layout is taming's
    state = {k: torch.empty(shape, device="meta") for k, shape in reference.items()}
    state["loss.discriminator.main.0.weight"] = torch.empty(64, 3, 4, 4, device="meta")
    converted = taming_to_diffusers(state, CONFIG_A)
    assert sorted(converted.used) == sorted(reference) and converted.ignored == [
        "loss.discriminator.main.0.weight"
    ]
    net = build_network(CONFIG_A, meta=True)
    net.load_state_dict(converted.state, strict=True, assign=True)  # no missing, no unexpected key
    assert sum(v.numel() for v in net.state_dict().values()) == 76_073_859
    for name, tensor in net.state_dict().items():
        assert tensor.shape == converted.state[name].shape, name


@pytest.mark.slow
def test_a_full_size_taming_checkpoint_file_loads_with_every_key_used(tmp_path: Path) -> None:
    import yaml

    gen = torch.Generator().manual_seed(0)
    state = {k: torch.randn(shape, generator=gen) for k, shape in _reference_keys().items()}
    (tmp_path / "vqgan").mkdir()
    torch.save({"state_dict": state, "epoch": 3}, tmp_path / "vqgan" / "imagenet.ckpt")
    config = {"model": {"target": CONFIG_A.target, "params": {**CONFIG_A.canonical(), "target": None}}}
    del config["model"]["params"]["target"]
    (tmp_path / "vqgan" / "imagenet.yaml").write_text(yaml.safe_dump(config))
    loaded = load_vqgan(find_vqgan_files("imagenet", tmp_path))
    renamed = taming_to_diffusers(state, CONFIG_A).state
    for name, tensor in loaded.net.state_dict().items():
        assert torch.equal(tensor, renamed[name].float()), name
    assert loaded.codebook.shape == (16384, 256) and loaded.factor == 16


@pytest.mark.parametrize(
    ("kind", "name", "factor"),
    [("vq", "imagenet", 16), ("gumbel", "openimages", 8), ("net2net", "sflckr", 16)],
)
def test_stand_ins_of_each_layout_load_encode_and_decode(
    tmp_path: Path, kind: str, name: str, factor: int
) -> None:
    config_path, ckpt = write_vqgan_stand_in(tmp_path, name=name, kind=kind)
    assert config_path.parent == tmp_path / "vqgan"
    m = load_vqgan(find_vqgan_files(name, tmp_path))
    assert (m.factor, m.stand_in, m.config.kind == "gumbel") == (factor, True, kind == "gumbel")
    assert m.default_learning_rate == (0.15 if kind == "gumbel" else 0.1)
    z = m.random_latent(32, 48, torch.Generator().manual_seed(1))
    assert z.shape == (1, 32, 32 // factor, 48 // factor)
    picture = m.decode(m.quantize(z))
    assert picture.shape == (1, 3, 32, 48) and 0 <= picture.min() and picture.max() <= 1
    latent = m.encode(picture)
    assert torch.equal(m.nearest(latent), latent)  # encodes to codebook vectors


def test_quantization_is_nearest_codebook_with_straight_through_gradient(model) -> None:
    z = (torch.randn(1, 32, 2, 3, generator=torch.Generator().manual_seed(0)) * 0.1).requires_grad_(True)
    book = model.codebook
    flat = z.detach().permute(0, 2, 3, 1).reshape(-1, 32)
    expected = book[torch.cdist(flat, book).argmin(1)].reshape(1, 2, 3, 32).permute(0, 3, 1, 2)
    q = model.quantize(z)
    assert torch.equal(q, expected)
    weights = torch.randn_like(q)
    (q * weights).sum().backward()
    assert torch.equal(z.grad, weights)  # straight through


def test_random_start_is_seeded_codebook_entries(model) -> None:
    a = model.random_latent(32, 32, torch.Generator().manual_seed(5))
    b = model.random_latent(32, 32, torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
    assert torch.equal(model.nearest(a), a)


def test_checkpoint_with_foreign_classes_loads_without_running_their_code(tmp_path: Path) -> None:
    """Lightning checkpoints of taming's era pickle Lightning classes; they load without it, inertly."""
    fake = types.ModuleType("pytorch_lightning_fake_callbacks")

    class ModelCheckpoint:  # stands for a class of a package that is not installed
        pass

    ModelCheckpoint.__module__ = fake.__name__
    ModelCheckpoint.__qualname__ = "ModelCheckpoint"
    fake.ModelCheckpoint = ModelCheckpoint
    marker = tmp_path / "code-ran"

    class Payload:
        def __reduce__(self):
            return (os.makedirs, (str(marker),))

    sys.modules[fake.__name__] = fake
    try:
        data = {
            "state_dict": {"w": torch.ones(2)},
            "callbacks": {ModelCheckpoint: {"best": 1}},
            "x": Payload(),
        }
        torch.save(data, tmp_path / "m.ckpt")
    finally:
        del sys.modules[fake.__name__]
    state = read_state_dict(tmp_path / "m.ckpt")
    assert list(state) == ["w"] and torch.equal(state["w"], torch.ones(2))
    assert not marker.exists()


def _vqgan_scene(
    stand_in: Path, models: Path, body: str = "", frames: int = 3, steps: int = 2, width: int = 32
) -> str:
    return (
        textwrap.dedent(
            f"""\
        width: {width}
        height: 32
        seed: 4
        steps_per_frame: {steps}
        cutouts: 2
        perceptors: [{{model: "local-dir:{stand_in}"}}]
        image_model: vqgan
        models_dir: {models}
        """
        )
        + textwrap.dedent(body)
        + f'scenes:\n  - prompts: "a red circle:1 | noise:-0.5"\n    frames: {frames}\n'
    )


def test_frame_keys_carry_the_weights_identity_not_their_path(
    stand_in_dir: Path, vqgan_models_dir: Path, tmp_path: Path
) -> None:
    text = _vqgan_scene(stand_in_dir, vqgan_models_dir)
    scene = load_scene_text(text, name="s.yaml")
    fingerprint = render_fingerprint(scene)
    assert fingerprint["vqgan"]["vqgan_model"] == "imagenet"
    assert len(fingerprint["vqgan"]["checkpoint_sha256"]) == 64
    keys = plan_keys(scene, build_plan(scene))
    moved = tmp_path / "moved"
    (moved / "vqgan").mkdir(parents=True)
    for suffix in ("yaml", "ckpt"):
        (moved / "vqgan" / f"imagenet.{suffix}").write_bytes(
            (vqgan_models_dir / "vqgan" / f"imagenet.{suffix}").read_bytes()
        )
    same = load_scene_text(_vqgan_scene(stand_in_dir, moved), name="s.yaml")
    assert plan_keys(same, build_plan(same)) == keys
    write_vqgan_stand_in(moved, seed=9)  # other weights, same place
    other = load_scene_text(_vqgan_scene(stand_in_dir, moved), name="s.yaml")
    assert plan_keys(other, build_plan(other)) != keys
    plain = load_scene_text(text.replace("image_model: vqgan\n", ""), name="s.yaml")
    assert "vqgan" not in render_fingerprint(plain)
    assert "vqgan_model" not in render_fingerprint(plain)["render"]


def _render(scene, frames, state=None, ctx=None):
    plan = build_plan(scene)
    ctx = ctx or build_context(scene, plan, torch.device("cpu"))
    pngs = []
    for frame in plan.frames[frames[0] - 1 : frames[1]]:
        result = render_frame(state, frame, ctx)
        state = result.state
        pngs.append(png_bytes(result.image))
    return state, pngs, ctx


@pytest.mark.parametrize("warp", ["pixels", pytest.param("latent", marks=pytest.mark.slow)])
def test_resume_from_a_checkpoint_is_byte_identical(
    stand_in_dir: Path, vqgan_models_dir: Path, tmp_path: Path, warp: str
) -> None:
    body = f"vqgan_warp: {warp}\nanimation: 2d\ntranslate_x: 5\nzoom: 1.1\nlearning_rate: 0.1\n"
    scene = load_scene_text(_vqgan_scene(stand_in_dir, vqgan_models_dir, body, frames=3), name="s.yaml")
    _, whole, ctx = _render(scene, (1, 3))
    state, first, _ = _render(scene, (1, 1), ctx=ctx)
    assert state.image.ema is not None and state.image.config.ema_decay == 0.99  # PyTTI's latent EMA
    save_checkpoint(
        tmp_path / "1.pt", state, CheckpointMeta(frame=1, step=state.step, key="k", png_sha256="p")
    )
    restored, _ = load_checkpoint(
        tmp_path / "1.pt", learning_rate=0.1, device=torch.device("cpu"), vqgan=ctx.vqgan
    )
    assert torch.equal(restored.image.z, state.image.z)
    _, rest, _ = _render(scene, (2, 3), state=restored, ctx=ctx)
    assert first + rest == whole
    assert len(set(whole)) == 3  # the frames differ: the render did something


def test_pixel_warp_decodes_warps_and_re_encodes(model) -> None:
    config = ImageConfig(image_model="vqgan", width=48, height=32, ema_decay=0.9, vqgan_model="imagenet")
    image = make_image(config, torch.Generator().manual_seed(0), torch.device("cpu"), vqgan=model)
    image.update_average_()
    motion = Motion2D(translate_x=16)
    expected = model.encode(warp_2d(image.decode_output(), motion))
    image.apply_warp(warp_2d_sized(motion, config.grid, "wrap", "bilinear"))
    assert torch.equal(image.z, expected)
    assert float(image.ema.accum) == 1.0  # the EMA restarts, as in PyTTI


def test_latent_warp_moves_the_grid_by_the_same_fraction_of_the_frame(model) -> None:
    config = ImageConfig(
        image_model="vqgan", width=64, height=32, vqgan_model="imagenet", vqgan_warp="latent"
    )
    image = make_image(config, torch.Generator().manual_seed(0), torch.device("cpu"), vqgan=model)
    before = image.z.detach().clone()  # (1, E, 2, 4)
    image.apply_warp(warp_2d_sized(Motion2D(translate_x=16), config.grid, "wrap", "nearest"))
    assert torch.equal(image.z, torch.roll(before, 1, dims=-1))  # 16 px = one 16-px cell


def test_direct_init_uses_latent_loss(stand_in_dir: Path, vqgan_models_dir: Path, tmp_path: Path) -> None:
    from PIL import Image

    Image.new("RGB", (32, 32), (200, 30, 30)).save(tmp_path / "init.png")
    body = f"init_image: {tmp_path / 'init.png'}\ndirect_init_weight: 2\n"
    scene = load_scene_text(_vqgan_scene(stand_in_dir, vqgan_models_dir, body, frames=1), name="s.yaml")
    plan = build_plan(scene)
    ctx = build_context(scene, plan, torch.device("cpu"))
    target = ctx.targets.init_direct
    assert target is not None and target.latent is not None and target.latent.shape == (1, 32, 2, 2)
    from pytti_engine.render import image_loss, initial_state

    state = initial_state(ctx)
    decoded = state.image.decode()
    terms: dict = {}
    image_loss(decoded, state.image, plan.frames[0], ctx, terms)
    expected = 2 * latent_loss(state.image, decoded, target.latent, target.hsv[:, :3])
    assert torch.allclose(terms["init/direct"], expected.detach())


def test_gumbel_model_renders_with_its_learning_rate(stand_in_dir: Path, vqgan_models_dir: Path) -> None:
    scene = load_scene_text(
        _vqgan_scene(stand_in_dir, vqgan_models_dir, "vqgan_model: openimages\n", frames=1, width=40),
        name="s.yaml",
    )
    assert scene.width == 40 and scene.notes == ()  # 40 is a multiple of 8
    state, pngs, ctx = _render(scene, (1, 1))
    assert state.image.z.shape == (1, 32, 4, 5) and state.image.default_learning_rate == 0.15
    assert ctx.vqgan is not None and ctx.vqgan.config.kind == "gumbel" and len(pngs) == 1
    assert ctx.settings.learning_rate == 0.15 == state.optimizer.param_groups[0]["lr"]  # PyTTI's, unset
    plain = load_scene_text(_vqgan_scene(stand_in_dir, vqgan_models_dir, frames=1), name="s.yaml")
    assert RenderSettings.from_scene(plain).learning_rate == 0.1
    chosen = load_scene_text(
        _vqgan_scene(stand_in_dir, vqgan_models_dir, "learning_rate: 0.02\n"), name="s.yaml"
    )
    assert RenderSettings.from_scene(chosen).learning_rate == 0.02


def test_manifest_record_names_model_and_sha256(model) -> None:
    from pytti_engine.manifest import models_record

    record = models_record([], "cpu", model)["vqgan"]
    assert record["vqgan_model"] == "imagenet" and record["stand_in"] is True
    assert (
        record["checkpoint_sha256"]
        == __import__("hashlib").sha256(model.files.checkpoint.read_bytes()).hexdigest()
    )
    assert record["factor"] == 16 and record["codebook"] == [64, 32]


def test_loading_refuses_weights_that_do_not_fit_the_config(tmp_path: Path, vqgan_models_dir: Path) -> None:
    from pytti_engine.errors import ModelLoadError

    files = find_vqgan_files("imagenet", vqgan_models_dir)
    payload = torch.load(files.checkpoint, weights_only=True)
    broken = copy.deepcopy(payload)
    broken["state_dict"]["decoder.conv_out.weight"] = torch.zeros(3, 64, 3, 3)
    torch.save(broken, tmp_path / "b.ckpt")
    with pytest.raises(ModelLoadError, match="decoder.conv_out.weight"):
        load_vqgan(VQGANFiles("custom", files.config, tmp_path / "b.ckpt"))
    del broken["state_dict"]["decoder.conv_out.weight"]
    torch.save(broken, tmp_path / "c.ckpt")
    with pytest.raises(ModelLoadError, match="missing"):
        load_vqgan(VQGANFiles("custom", files.config, tmp_path / "c.ckpt"))
