"""Frame keys hold the contents of every input file (issue 15.4): editing an input in place changes the
keys from the first frame that reads it, and only from there."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pytti_engine.hashes import HashCache, file_sha256, file_version
from pytti_engine.inputs import (
    InputsRecord,
    changed_inputs,
    describe_changes,
    input_uses,
)
from pytti_engine.job import plan_inputs, plan_keys
from pytti_engine.perceptors import load_perceptor, weights_identity, write_stand_in
from pytti_engine.scene import build_plan, load_scene
from pytti_engine.video import EncodeSettings, assemble_video
from tests.engine.test_audio import tone, write_audio
from tests.scene_files import small_scene_text

TWO_STAGES = """\
scenes:
  - prompts: "a red circle:1"
    frames: 4
  - prompts: "{second}"
    frames: 3
"""


def _picture(path: Path, colour: tuple[int, int, int]) -> Path:
    Image.fromarray(np.full((16, 16, 3), colour, dtype=np.uint8)).save(path)
    return path


def _rewrite(path: Path, write: Callable[[Path], object]) -> None:
    """Overwrite ``path`` in place (same inode) with what ``write`` writes to a scratch file, as an editor
    saving over it would; the new mtime always differs from the old one."""
    before = os.stat(path).st_mtime_ns
    scratch = path.with_name("scratch" + path.suffix)
    write(scratch)
    path.write_bytes(scratch.read_bytes())
    scratch.unlink()
    if os.stat(path).st_mtime_ns == before:  # same clock tick: move it on, as any later edit would
        os.utime(path, ns=(before + 10**9, before + 10**9))


def _keys(scene_path: Path) -> list[str]:
    scene = load_scene(scene_path)
    return plan_keys(scene, build_plan(scene))


def _first_change(before: list[str], after: list[str]) -> int | None:
    """The first 1-based frame whose key differs (``None`` when none does)."""
    assert len(before) == len(after)
    return next((i for i, (a, b) in enumerate(zip(before, after, strict=True), start=1) if a != b), None)


def _edit_changes_keys_from(scene_path: Path, target: Path, write: Callable[[Path], object]) -> int | None:
    before = _keys(scene_path)
    assert _keys(scene_path) == before, "keys are deterministic"
    _rewrite(target, write)
    return _first_change(before, _keys(scene_path))


def test_init_image_edit_rerenders_from_frame_1(write_scene: Callable[..., Path], tmp_path: Path) -> None:
    init = _picture(tmp_path / "init.png", (200, 0, 0))
    scene = write_scene(f"init_image: {init}\n", frames=3)
    assert _edit_changes_keys_from(scene, init, lambda p: _picture(p, (0, 200, 0))) == 1


def test_mask_used_from_frame_5_keeps_frames_1_to_4(write_scene: Callable[..., Path], tmp_path: Path) -> None:
    mask = _picture(tmp_path / "mask.png", (255, 255, 255))
    scene = write_scene(TWO_STAGES.format(second="a red circle:1_[mask.png]"))
    assert _edit_changes_keys_from(scene, mask, lambda p: _picture(p, (0, 0, 0))) == 5


def test_semantic_image_prompt_edit_counts_from_its_first_use(
    write_scene: Callable[..., Path], tmp_path: Path
) -> None:
    picture = _picture(tmp_path / "pic.png", (0, 0, 255))
    scene = write_scene(TWO_STAGES.format(second="[pic.png]:1"))
    assert _edit_changes_keys_from(scene, picture, lambda p: _picture(p, (255, 255, 0))) == 5


def test_direct_image_prompt_edit_rerenders_from_frame_1(
    write_scene: Callable[..., Path], tmp_path: Path
) -> None:
    picture = _picture(tmp_path / "target.png", (0, 0, 255))
    scene = write_scene(f"direct_image_prompts: [{{image: {picture}, weight: 1}}]\n", frames=3)
    assert _edit_changes_keys_from(scene, picture, lambda p: _picture(p, (9, 9, 9))) == 1


def test_stabilization_mask_counts_from_the_first_frame_its_loss_is_on(
    write_scene: Callable[..., Path], tmp_path: Path
) -> None:
    mask = _picture(tmp_path / "stab.png", (255, 255, 255))
    body = f'animation: 2d\nstabilization: {{direct: "max(0, t - 0.2)", direct_mask: {mask}}}\n'
    scene_path = write_scene(body, frames=6)
    plan = build_plan(load_scene(scene_path))
    first_on = min(f.index for f in plan.frames if dict(f.stabilization).get("direct"))
    assert first_on > 1
    assert _edit_changes_keys_from(scene_path, mask, lambda p: _picture(p, (0, 0, 0))) == first_on


def _source_video(path: Path, shade: int) -> Path:
    folder = path.parent / f"frames-{shade}"
    folder.mkdir(exist_ok=True)
    pngs = [_picture(folder / f"{k}.png", (shade, 40 * k, 0)) for k in range(4)]
    settings = EncodeSettings(fps=12, crf=0, preset="ultrafast", pix_fmt="yuv444p")
    return assemble_video(pngs, path, settings)


def test_video_source_edit_rerenders_from_frame_1(write_scene: Callable[..., Path], tmp_path: Path) -> None:
    video = _source_video(tmp_path / "source.mp4", 10)
    scene = write_scene(f"animation: video\nvideo_path: {video}\n", frames=3)
    assert _edit_changes_keys_from(scene, video, lambda p: _source_video(p, 200)) == 1


def test_video_mask_edit_counts_from_its_first_use(write_scene: Callable[..., Path], tmp_path: Path) -> None:
    video = _source_video(tmp_path / "mask.mp4", 255)
    scene = write_scene(TWO_STAGES.format(second="a red circle:1_[mask.mp4]"))
    assert _edit_changes_keys_from(scene, video, lambda p: _source_video(p, 0)) == 5


def test_audio_edit_rerenders(
    write_scene: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTTI_CACHE_DIR", str(tmp_path / "cache"))
    audio = write_audio(tmp_path / "sound.wav", tone(seconds=1.0, start=0.1))
    body = (
        f"input_audio: {audio}\ninput_audio_filters: [{{name: bass, f_center: 440, f_width: 100}}]\n"
        "animation: 2d\ntranslate_x: bass\n"
    )
    scene_path = write_scene(body, frames=3)
    scene = load_scene(scene_path)
    assert [u.field for u in input_uses(scene, build_plan(scene))] == ["perceptors[0] weights"] * 2 + [
        "input_audio"
    ]
    # a louder tone: the same band values after normalisation, so only the file's hash tells
    louder = lambda p: write_audio(p, 1.5 * tone(seconds=1.0, start=0.1))  # noqa: E731
    assert _edit_changes_keys_from(scene_path, audio, louder) == 1


def test_local_dir_weights_edit_rerenders_from_frame_1(stand_in_dir: Path, tmp_path: Path) -> None:
    model = shutil.copytree(stand_in_dir, tmp_path / "clip")
    other = write_stand_in(tmp_path / "other", seed=1)
    scene = tmp_path / "scene.yaml"
    scene.write_text(small_scene_text(model, prompts="a red circle:1", frames=2))
    weights = model / "open_clip_model.safetensors"
    copy = lambda p: p.write_bytes((other / weights.name).read_bytes())  # noqa: E731
    assert _edit_changes_keys_from(scene, weights, copy) == 1


def test_weights_file_edit_rerenders_and_identity_matches_the_loaded_perceptor(
    stand_in_dir: Path, tmp_path: Path
) -> None:
    weights = shutil.copy(stand_in_dir / "open_clip_model.safetensors", tmp_path / "w.safetensors")
    weights = Path(weights)
    other = write_stand_in(tmp_path / "other", seed=1)
    scene = tmp_path / "scene.yaml"
    text = small_scene_text(stand_in_dir, prompts="a red circle:1", frames=2)
    scene.write_text(
        text.replace(
            f'{{model: "local-dir:{stand_in_dir}"}}', f"{{model: pytti-stand-in, pretrained: {weights}}}"
        )
    )
    identity = weights_identity("pytti-stand-in", str(weights))
    assert identity == load_perceptor("pytti-stand-in", str(weights)).identity  # what the manifest records
    assert (
        weights_identity(f"local-dir:{stand_in_dir}", None)
        == load_perceptor(f"local-dir:{stand_in_dir}").identity
    )
    copy = lambda p: p.write_bytes((other / "open_clip_model.safetensors").read_bytes())  # noqa: E731
    assert _edit_changes_keys_from(scene, weights, copy) == 1


def test_engine_version_from_the_package_metadata_is_in_every_key(
    write_scene: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    from importlib import metadata

    scene = write_scene(frames=2)
    before = _keys(scene)
    real = metadata.version
    monkeypatch.setattr(metadata, "version", lambda name: "99.0" if name == "pytti-flow" else real(name))
    assert _first_change(before, _keys(scene)) == 1


def test_hash_cache_reads_a_file_once_per_version_and_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "big.bin"
    path.write_bytes(b"a" * 1000)
    cache = HashCache()
    real = cache.sha256(path)
    assert real == file_sha256(path) and cache.changed
    # a cached entry for the file's current version is believed: the file is not read again
    size, mtime_ns, ctime_ns = file_version(path)
    cache.entries[str(path.resolve())] = (size, mtime_ns, ctime_ns, "cached")
    assert cache.sha256(path) == "cached"
    record = InputsRecord(hashes=cache)
    record.write(tmp_path / "inputs.json", [])
    assert InputsRecord.read(tmp_path / "inputs.json").hashes.sha256(path) == "cached"
    # editing the file (another size or mtime) hashes it again
    os.utime(path, ns=(mtime_ns + 10**9, mtime_ns + 10**9))
    assert cache.sha256(path) == real
    path.write_bytes(b"b" * 1000)
    assert cache.sha256(path) != real
    assert InputsRecord.read(tmp_path / "missing.json").inputs == []


def test_changed_inputs_name_the_field_and_the_first_frame(
    write_scene: Callable[..., Path], tmp_path: Path
) -> None:
    mask = _picture(tmp_path / "mask.png", (255, 255, 255))
    scene = load_scene(write_scene(TWO_STAGES.format(second="a red circle:1_[mask.png]")))
    plan = build_plan(scene)
    record = InputsRecord()
    record.write(tmp_path / "inputs.json", plan_inputs(scene, plan))
    assert changed_inputs(record.inputs, plan_inputs(scene, plan)) == []
    _rewrite(mask, lambda p: _picture(p, (0, 0, 0)))
    changes = changed_inputs(InputsRecord.read(tmp_path / "inputs.json").inputs, plan_inputs(scene, plan))
    assert [(c.field, c.source, c.first_frame) for c in changes] == [("scenes[1] image mask", str(mask), 5)]
    line = describe_changes(changes)
    assert line is not None and "\n" not in line
    assert f"scenes[1] image mask {mask} (read from frame 5)" in line and "frames 5 and later" in line
