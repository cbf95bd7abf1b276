"""Allowed input/output roots (issue 16.2): absolute paths, ``..``, symbolic links, existence never
revealed, and error messages that never echo a file that is not a scene."""

from collections.abc import Callable
from pathlib import Path

import pytest

from pytti_engine.confine import (
    INPUT_ROOTS_ENV,
    OUTPUT_ROOTS_ENV,
    ConfinementError,
    Roots,
    renders_root,
    under_renders_root,
)
from pytti_engine.errors import SceneError
from pytti_engine.scene import load_scene

SHADOW = (
    "root:$6$Zq1sEcReT$hAsHhAsHhAsHhAsHhAsH:20228:0:99999:7:::\n"
    "daemon:*:20228:0:99999:7:::\n"
    "alice:$6$AnOtHeRsAlT$pAsSwOrDhAsHpAsSwOrD:20228:0:99999:7:::\n"
)


def test_roots_resolve_dotdot_and_symlinks_before_comparing(tmp_path: Path) -> None:
    root, outside = tmp_path / "renders", tmp_path / "private"
    (root / "ok").mkdir(parents=True)
    outside.mkdir()
    (root / "escape").symlink_to(outside)  # a link inside the root that points out of it
    (root / "inner").symlink_to(root / "ok")  # a link that stays inside
    (tmp_path / "alias").symlink_to(root)  # the root itself reached through a link
    roots = Roots.parse(OUTPUT_ROOTS_ENV, f"{tmp_path / 'alias'}:{tmp_path / 'elsewhere'}")
    assert roots is not None
    assert roots.allows(root / "ok" / "run") and roots.allows(root) and roots.allows(root / "inner" / "new")
    for bad in (
        Path("/etc/pytti-test"),
        root / ".." / "private" / "run",
        root / "ok" / ".." / ".." / "private",
        root / "escape",
        root / "escape" / "new" / "run",  # not there yet: its existing prefix is resolved
        tmp_path / "renders-sibling",  # a name that merely starts like the root
    ):
        assert not roots.allows(bad), bad
        with pytest.raises(ConfinementError) as err:
            roots.check(bad, "out_dir")
        message = str(err.value)
        assert OUTPUT_ROOTS_ENV in message and "\n" not in message
        assert str(outside) not in message or "private" in str(bad), "never where a link points"
    assert Roots.parse(INPUT_ROOTS_ENV, " : ") is None  # empty: not confined


def test_renders_root_gives_the_default_and_relative_out_dirs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PYTTI_RENDERS_ROOT", raising=False)
    assert renders_root() == tmp_path / "renders"
    monkeypatch.setenv("PYTTI_RENDERS_ROOT", "/renders")
    assert renders_root() == Path("/renders")
    assert under_renders_root("nightly/x") == Path("/renders/nightly/x")
    assert under_renders_root("/data/x") == Path("/data/x")


@pytest.mark.parametrize(
    "line",
    [
        "init_image: {outside}",
        "init_image: ../private/{name}",
        "init_image: link/{name}",
        'scenes:\n  - prompts: "a cat:1 | [{outside}]:0.5"\n    frames: 1',
        'scenes:\n  - prompts: "a cat:1_[{outside}]"\n    frames: 1',
    ],
    ids=["absolute", "dotdot", "symlink", "image-prompt", "mask"],
)
def test_scene_paths_outside_the_input_roots_are_refused_alike_whether_or_not_they_exist(
    line: str,
    write_scene: Callable[..., Path],
    tmp_path: Path,
    stand_in_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    private = tmp_path / "private"
    private.mkdir()
    (private / "photo.png").write_bytes(b"\x89PNG not really")
    (tmp_path / "scenes").mkdir()
    (tmp_path / "scenes" / "link").symlink_to(private)  # inside the root, pointing out of it
    monkeypatch.setenv(INPUT_ROOTS_ENV, f"{tmp_path / 'scenes'}:{stand_in_dir}")
    messages = []
    for name in ("photo.png", "missing.png"):
        body = line.format(outside=private / name, name=name) + "\n"
        scene = write_scene(body, name=f"scenes/{name}.yaml", frames=1)
        with pytest.raises(SceneError) as err:
            load_scene(scene)
        messages.append(str(err.value).replace(name, "NAME"))
        assert INPUT_ROOTS_ENV in messages[-1] and "outside the allowed folders" in messages[-1]
        assert "not found" not in messages[-1]
    assert messages[0] == messages[1], "the refusal must not tell whether the file exists"
    monkeypatch.delenv(INPUT_ROOTS_ENV)
    scene = write_scene(line.format(outside=private / "missing.png", name="missing.png") + "\n", frames=1)
    with pytest.raises(SceneError, match="not found"):  # unconfined: the usual check
        load_scene(scene)


def test_a_file_that_is_not_a_scene_is_never_echoed(tmp_path: Path) -> None:
    shadow = tmp_path / "shadow"
    shadow.write_text(SHADOW)
    with pytest.raises(SceneError) as err:
        load_scene(shadow)
    message = str(err.value)
    assert "not a scene file" in message and "\n" not in message
    for secret in ("root", "alice", "$6$", "hAsH", "20228"):
        assert secret not in message.replace(str(shadow), "")


def test_unknown_keys_are_quoted_as_short_excerpts(tmp_path: Path) -> None:
    scene = tmp_path / "long.yaml"
    scene.write_text('width: 64\nscenes: [{prompts: "a:1", frames: 1}]\n' + "x" * 500 + ": 1\n")
    with pytest.raises(SceneError) as err:
        load_scene(scene)
    assert "unknown key" in str(err.value) and "x" * 41 not in str(err.value)
