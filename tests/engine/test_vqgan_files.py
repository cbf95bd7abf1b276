"""Finding VQGAN files, reading taming configs, and the scene keys of image_model: vqgan (no torch model)."""

from pathlib import Path

import pytest
import yaml

from pytti_engine.errors import ModelLoadError, SceneError
from pytti_engine.scene import load_scene_text
from pytti_engine.vqgan_files import (
    ENV_MODELS_DIR,
    HUB_REPO,
    check_image_model,
    find_vqgan_files,
    hub_filenames,
    read_vqgan_config,
)

DDCONFIG_A = {
    "double_z": False,
    "z_channels": 256,
    "resolution": 256,
    "in_channels": 3,
    "out_ch": 3,
    "ch": 128,
    "ch_mult": [1, 1, 2, 2, 4],
    "num_res_blocks": 2,
    "attn_resolutions": [16],
    "dropout": 0.0,
}
BASE = 'perceptors: [{model: ViT-B-32, pretrained: openai}]\nscenes:\n  - prompts: "a"\n    frames: 1\n'


def _write_pair(
    folder: Path, stem: str, target: str = "taming.models.vqgan.VQModel", **params: object
) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    config = {
        "model": {"target": target, "params": {"n_embed": 16384, "embed_dim": 256, "ddconfig": DDCONFIG_A}}
    }
    config["model"]["params"].update(params)
    (folder / f"{stem}.yaml").write_text(yaml.safe_dump(config))
    (folder / f"{stem}.ckpt").write_bytes(b"not read here")


@pytest.fixture
def no_default_dirs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Empty user cache, HF cache and no PYTTI_MODELS_DIR, so only what a test sets up is found."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.delenv(ENV_MODELS_DIR, raising=False)
    return tmp_path


def test_read_taming_configs_of_each_layout(tmp_path: Path) -> None:
    _write_pair(tmp_path, "a")
    a = read_vqgan_config(tmp_path / "a.yaml")
    assert (a.kind, a.prefix, a.factor, a.n_embed, a.default_learning_rate) == ("vq", "", 16, 16384, 0.1)
    gumbel_dd = {**DDCONFIG_A, "ch_mult": [1, 1, 2, 4]}
    _write_pair(tmp_path, "g", "taming.models.vqgan.GumbelVQ", ddconfig=gumbel_dd, n_embed=8192)
    g = read_vqgan_config(tmp_path / "g.yaml")
    assert (g.kind, g.factor, g.default_learning_rate) == ("gumbel", 8, 0.15)
    first = {
        "target": "taming.models.vqgan.VQModel",
        "params": {"n_embed": 1024, "embed_dim": 256, "ddconfig": DDCONFIG_A},
    }
    (tmp_path / "n.yaml").write_text(
        yaml.safe_dump(
            {
                "model": {
                    "target": "taming.models.cond_transformer.Net2NetTransformer",
                    "params": {"first_stage_config": first},
                }
            }
        )
    )
    n = read_vqgan_config(tmp_path / "n.yaml")
    assert (n.kind, n.prefix, n.n_embed) == ("vq", "first_stage_model.", 1024)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"target": "taming.models.dummy.Other"}, "is not a taming VQGAN"),
        ({"ddconfig": {**DDCONFIG_A, "double_z": True}}, "double_z"),
        ({"ddconfig": {**DDCONFIG_A, "ch": 100}}, "multiples of 32"),
        ({"ddconfig": {k: v for k, v in DDCONFIG_A.items() if k != "ch_mult"}}, "lacks ch_mult"),
        ({"n_embed": 0}, "n_embed must be a positive integer"),
    ],
)
def test_unusable_configs_are_refused_by_name(tmp_path: Path, change: dict, message: str) -> None:
    target = change.pop("target", "taming.models.vqgan.VQModel")
    _write_pair(tmp_path, "x", target, **change)
    with pytest.raises(ModelLoadError, match=message):
        read_vqgan_config(tmp_path / "x.yaml")


def test_search_order_models_dir_then_env_then_user_cache_then_hub(
    no_default_dirs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = no_default_dirs
    _write_pair(root / "cache" / "vqgan", "imagenet")
    assert find_vqgan_files("imagenet").source.endswith("(default)")
    _write_pair(root / "env" / "vqgan", "vqgan_imagenet_f16_16384")  # the original download's file name
    monkeypatch.setenv(ENV_MODELS_DIR, str(root / "env"))
    found = find_vqgan_files("imagenet")
    assert found.checkpoint == root / "env" / "vqgan" / "vqgan_imagenet_f16_16384.ckpt"
    _write_pair(root / "scene-models" / "vqgan", "imagenet")
    assert (
        find_vqgan_files("imagenet", root / "scene-models").config
        == root / "scene-models/vqgan/imagenet.yaml"
    )
    # The Hugging Face cache is the fallback: the hub copy's layout, <name>/<name>.yaml|.ckpt.
    snapshot = root / "hf" / f"models--{HUB_REPO.replace('/', '--')}" / "snapshots" / "abc123"
    for name in hub_filenames("wikiart"):
        (snapshot / name).parent.mkdir(parents=True, exist_ok=True)
        (snapshot / name).write_text("x")
    (root / "hf" / f"models--{HUB_REPO.replace('/', '--')}" / "refs").mkdir(parents=True)
    (root / "hf" / f"models--{HUB_REPO.replace('/', '--')}" / "refs" / "main").write_text("abc123")
    hub = find_vqgan_files("wikiart")
    assert hub.checkpoint == snapshot / "wikiart" / "wikiart.ckpt"
    assert "Hugging Face cache" in hub.source


def test_missing_files_message_names_files_and_every_place(no_default_dirs: Path) -> None:
    root = no_default_dirs
    (root / "m" / "vqgan").mkdir(parents=True)
    (root / "m" / "vqgan" / "imagenet.yaml").write_text("x")  # half a pair
    with pytest.raises(ModelLoadError) as error:
        find_vqgan_files("imagenet", root / "m")
    message = str(error.value)
    assert "\n" not in message
    assert "imagenet.yaml and imagenet.ckpt (or vqgan_imagenet_f16_16384.yaml/.ckpt) not found" in message
    for place in (str(root / "m" / "vqgan"), str(root / "cache" / "vqgan"), str(root / "hf"), HUB_REPO):
        assert place in message
    assert "imagenet.ckpt is not" in message
    assert "pytti models fetch vqgan:imagenet" in message


def test_scene_keys_round_size_and_refuse_misuse(tmp_path: Path) -> None:
    scene = load_scene_text("image_model: vqgan\nwidth: 500\nheight: 260\n" + BASE, name="s.yaml")
    assert (scene.width, scene.height, scene.vqgan) == (496, 256, "imagenet")
    assert scene.notes == (
        "width 500 rounded down to 496 (a multiple of the VQGAN's 16-pixel cells)",
        "height 260 rounded down to 256 (a multiple of the VQGAN's 16-pixel cells)",
    )
    gumbel = load_scene_text(
        "image_model: vqgan\nvqgan_model: openimages\nwidth: 100\n" + BASE, name="s.yaml"
    )
    assert (gumbel.width, gumbel.height) == (96, 256)
    plain = load_scene_text("width: 500\n" + BASE, name="s.yaml")
    assert (plain.width, plain.notes) == (500, ())
    bad = {
        "image_model: vqgan\nvqgan_model: imagnet\n": "did you mean 'imagenet'",
        "vqgan_model: wikiart\n": "vqgan_model needs image_model: vqgan",
        "image_model: vqgan\npixel_size: 2\n": "pixel_size must be 1",
        "image_model: vqgan\nheight: 12\n": "height must be at least 16",
        "image_model: vqgan\nvqgan_model: {config: a.yaml, checkpoint: b.ckpt}\n": "file not found",
        "image_model: vqgan\nmodels_dir: nowhere\n": "models_dir folder not found",
        "vqgan_warp: latent\n": "vqgan_warp needs image_model: vqgan",
    }
    for text, message in bad.items():
        with pytest.raises(SceneError, match=message) as error:
            load_scene_text(text + BASE, name=str(tmp_path / "s.yaml"))
        assert error.value.line is not None


def test_explicit_pair_factor_read_from_its_config(tmp_path: Path) -> None:
    _write_pair(
        tmp_path, "custom", "taming.models.vqgan.GumbelVQ", ddconfig={**DDCONFIG_A, "ch_mult": [1, 2, 4]}
    )
    text = (
        "image_model: vqgan\nvqgan_model: {config: custom.yaml, checkpoint: custom.ckpt}\nwidth: 70\n" + BASE
    )
    scene = load_scene_text(text, name="s.yaml", base_dir=tmp_path)
    assert scene.width == 68  # f4
    files = find_vqgan_files({"config": tmp_path / "custom.yaml", "checkpoint": tmp_path / "custom.ckpt"})
    assert (files.name, files.checkpoint) == ("custom", tmp_path / "custom.ckpt")


def test_check_refuses_a_named_file_of_the_wrong_factor(no_default_dirs: Path) -> None:
    root = no_default_dirs
    _write_pair(root / "m" / "vqgan", "openimages")  # an f16 config under the f8 model's name
    scene = load_scene_text(
        f"image_model: vqgan\nvqgan_model: openimages\nmodels_dir: {root / 'm'}\n" + BASE, name="s.yaml"
    )
    with pytest.raises(ModelLoadError, match="describes an f16 model, but openimages is f8"):
        check_image_model(scene)


def test_check_is_silent_for_other_image_models() -> None:
    assert check_image_model(load_scene_text(BASE, name="s.yaml")) is None
