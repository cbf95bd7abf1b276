"""Local weights never silently get the wrong activation (issue 15.3): the perceptor entry's
``quick_gelu`` decides the architecture, OpenAI's releases are recognised, anything else is built with
the architecture's activation and a warning that says how to choose; the manifest records the choice."""

import logging
from pathlib import Path

import pytest
import torch
from open_clip.transformer import QuickGELU
from safetensors.torch import save_file

from pytti_engine.errors import ModelLoadError
from pytti_engine.manifest import models_record
from pytti_engine.perceptors import STAND_IN_MODEL, check_perceptor, load_perceptor, random_model

OPENAI_ONLY = {"input_resolution": 224, "context_length": 77, "vocab_size": 49408}


def _acts(model: torch.nn.Module) -> set[type]:
    """The activation classes of every MLP of both towers."""
    blocks = [*model.visual.transformer.resblocks, *model.transformer.resblocks]  # type: ignore[union-attr]
    return {type(b.mlp.gelu) for b in blocks}


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The stand-in architecture's random weights as a plain safetensors file (nothing recognisable)."""
    path = tmp_path_factory.mktemp("weights") / "clip.safetensors"
    save_file({k: v.contiguous() for k, v in random_model(STAND_IN_MODEL, 1).state_dict().items()}, str(path))
    return path


@pytest.mark.usefixtures("torch_one_thread")
def test_the_same_weights_load_into_the_activation_the_entry_asks_for(weights: Path) -> None:
    quick = load_perceptor(STAND_IN_MODEL, str(weights), quick_gelu=True)
    exact = load_perceptor(STAND_IN_MODEL, str(weights), quick_gelu=False)
    assert _acts(quick.model) == {QuickGELU} and quick.quick_gelu
    assert _acts(exact.model) == {torch.nn.GELU} and not exact.quick_gelu
    assert quick.activation == "QuickGELU (quick_gelu: true in the scene)"
    images = torch.rand(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert not torch.allclose(quick.encode_image(images), exact.encode_image(images), atol=1e-4)
    assert check_perceptor(STAND_IN_MODEL, str(weights), True).warning is None


def test_an_unrecognised_file_gets_the_architectures_activation_and_one_warning(
    weights: Path, caplog: pytest.LogCaptureFixture
) -> None:
    check = check_perceptor(STAND_IN_MODEL, str(weights))
    assert not check.quick_gelu and check.warning is not None
    assert "built with exact GELU" in check.warning and "quick_gelu: true" in check.warning
    with caplog.at_level(logging.WARNING, logger="pytti_engine.perceptors"):
        loaded = load_perceptor(STAND_IN_MODEL, str(weights))
    assert _acts(loaded.model) == {torch.nn.GELU}
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING] == [check.warning]


def test_a_state_dict_in_openais_layout_is_recognised_and_loads(tmp_path: Path) -> None:
    state = random_model(STAND_IN_MODEL, 2).state_dict()
    path = tmp_path / "openai-vit.pt"
    torch.save({**state, **{k: torch.tensor(v) for k, v in OPENAI_ONLY.items()}}, path)
    check = check_perceptor(STAND_IN_MODEL, str(path))
    assert check.quick_gelu and check.warning is None
    assert check.activation == "QuickGELU (recognised as OpenAI's weights: OpenAI's state dict layout)"
    loaded = load_perceptor(STAND_IN_MODEL, str(path))  # open_clip's own loader refuses the extra keys
    assert _acts(loaded.model) == {QuickGELU}
    assert torch.equal(loaded.model.state_dict()["text_projection"], state["text_projection"])


def test_openais_torchscript_archive_is_recognised_and_loads(tmp_path: Path) -> None:
    net = random_model(STAND_IN_MODEL, 3).eval()
    path = tmp_path / "ViT-B-32.pt"
    torch.jit.save(torch.jit.script(net), str(path))
    assert check_perceptor(STAND_IN_MODEL, str(path)).activation.endswith("TorchScript archive)")
    loaded = load_perceptor(STAND_IN_MODEL, str(path))
    assert _acts(loaded.model) == {QuickGELU}
    assert torch.equal(
        loaded.model.state_dict()["positional_embedding"], net.state_dict()["positional_embedding"]
    )


def test_a_file_in_an_openai_tags_hugging_face_cache_folder_is_recognised(
    weights: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "hub" / "models--timm--vit_base_patch32_clip_224.openai" / "snapshots" / "0"
    folder.mkdir(parents=True)
    copy = folder / "open_clip_model.safetensors"
    copy.write_bytes(weights.read_bytes())
    check = check_perceptor(STAND_IN_MODEL, str(copy))
    assert check.quick_gelu and check.warning is None
    assert "ViT-B-32:openai by its Hugging Face cache folder" in check.activation


def test_quick_gelu_false_cannot_undo_a_quickgelu_architecture(weights: Path) -> None:
    with pytest.raises(ModelLoadError, match="quick_gelu: false, but this architecture"):
        check_perceptor("ViT-B-32-quickgelu", str(weights), False)


def test_the_manifest_records_the_activation(weights: Path) -> None:
    loaded = load_perceptor(STAND_IN_MODEL, str(weights), quick_gelu=True)
    (entry,) = models_record([loaded], "cpu")["perceptors"]
    assert entry["quick_gelu"] is True and entry["activation"] == "QuickGELU (quick_gelu: true in the scene)"


def test_quick_gelu_is_a_perceptor_key_and_part_of_the_frame_keys(stand_in_dir: Path) -> None:
    from pytti_engine.job import render_fingerprint
    from pytti_engine.scene import load_scene_text
    from tests.scene_files import small_scene_text

    text = small_scene_text(stand_in_dir, prompts="a red circle")
    plain = load_scene_text(text)
    quick = load_scene_text(text, overrides=["perceptors.0.quick_gelu=true"])
    assert plain.perceptors[0].quick_gelu is None and quick.perceptors[0].quick_gelu is True
    assert render_fingerprint(plain) != render_fingerprint(quick)
    assert "quick_gelu" not in str(render_fingerprint(plain))  # unset: keys of earlier renders stay


def test_validate_prints_each_activation_and_warns_about_a_guess(
    weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from flows.cli import main

    scene = tmp_path / "s.yaml"
    entry = f"{{model: {STAND_IN_MODEL}, pretrained: {weights}}}"
    scene.write_text(
        f"width: 32\nheight: 32\nperceptors: [{entry}]\nscenes: [{{prompts: a cat, frames: 1}}]\n"
    )
    assert main(["validate", str(scene)]) == 0
    out, err = capsys.readouterr()
    assert "224 px, GELU (the architecture's default: the weights are not recognised)" in out
    assert err.count("warning: ") == 1 and "add `quick_gelu: true` to this perceptor entry" in err
    assert main(["validate", str(scene), "--set", "perceptors.0.quick_gelu=true"]) == 0
    out, err = capsys.readouterr()
    assert "224 px, QuickGELU (quick_gelu: true in the scene)" in out and "warning" not in err
