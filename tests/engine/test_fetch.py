"""http(s) inputs (issue 14.5): fetched once into the run directory, content-hashed into the frame keys,
one-line errors naming the field and the URL when unreachable. The server is a local http.server (``http_server``)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pytti_engine.errors import PyttiError, SceneError
from pytti_engine.fetch import (
    check_reachable,
    fetch_inputs,
    fetched_inputs,
    fetched_path,
    localize_scene,
    scene_urls,
    url_files,
)
from pytti_engine.job import build_context, check_renderable, plan_inputs, plan_keys
from pytti_engine.scene import build_plan, load_scene
from pytti_engine.scene.load import load_scene_text
from tests.http_server import Server


def _picture(path: Path, colour: tuple[int, int, int]) -> Path:
    Image.fromarray(np.full((16, 16, 3), colour, dtype=np.uint8)).save(path)
    return path


def _closed_port_url(name: str) -> str:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/{name}"


def _url_scene(write_scene: Callable[..., Path], http_server: Server) -> Path:
    _picture(http_server.root / "init.png", (200, 30, 30))
    _picture(http_server.root / "mask.png", (255, 255, 255))
    _picture(http_server.root / "ref.png", (0, 0, 250))
    _picture(http_server.root / "target.png", (0, 250, 0))
    body = (
        f"init_image: {http_server.url('init.png')}\n"
        f"direct_image_prompts: [{{image: {http_server.url('target.png')}, weight: 0.5}}]\n"
        "scenes:\n"
        '  - prompts: "a red circle:1"\n    frames: 2\n'
        f'  - prompts: "a red circle:1_[{http_server.url("mask.png")}] | [{http_server.url("ref.png")}]:1"\n'
        "    frames: 2\n"
    )
    return write_scene(body)


def test_url_inputs_are_fetched_once_into_the_run_directory(
    write_scene: Callable[..., Path], http_server: Server, tmp_path: Path
) -> None:
    scene = load_scene(_url_scene(write_scene, http_server))
    assert [u.field for u in scene_urls(scene)] == [
        "init_image",
        "direct_image_prompts[0].image",
        "scenes[1] image mask",
        "scenes[1] image prompt",
    ]
    plan = build_plan(scene)
    check_renderable(plan, scene)  # URLs are no longer refused
    run = tmp_path / "run"
    local = fetch_inputs(scene, run)
    assert sorted(http_server.requests) == ["/init.png", "/mask.png", "/ref.png", "/target.png"]
    for url, path in local.items():
        assert path == fetched_path(run, url) and path.parent == run / "inputs"
        assert path.read_bytes() == (http_server.root / url.rsplit("/", 1)[1]).read_bytes()
    assert not list((run / "inputs").glob("*.tmp*")), "atomic: no temporary files left"
    assert fetch_inputs(scene, run) == local and len(http_server.requests) == 4, "fetched once"
    assert fetched_inputs(scene, run) == local


def test_url_inputs_are_hashed_into_the_keys_by_url_and_content(
    write_scene: Callable[..., Path], http_server: Server, tmp_path: Path
) -> None:
    scene = load_scene(_url_scene(write_scene, http_server))
    plan = build_plan(scene)
    run = tmp_path / "run"

    def keys(run_dir: Path) -> list[str]:
        return plan_keys(
            scene, plan, inputs=plan_inputs(scene, plan, localize=url_files(fetch_inputs(scene, run_dir)))
        )

    before = keys(run)
    moved = shutil.move(run, tmp_path / "moved")
    assert keys(Path(moved)) == before, "the keys name a URL, not where its copy lies"
    # the remote mask changes: the run keeps its copy (resume is offline and keeps its frames) ...
    _picture(http_server.root / "mask.png", (0, 0, 0))
    assert keys(Path(moved)) == before
    # ... until the copy is deleted: fetched again, the keys change from the mask's first frame (3)
    fetched_path(Path(moved), http_server.url("mask.png")).unlink()
    after = keys(Path(moved))
    assert [a == b for a, b in zip(before, after, strict=True)] == [True, True, False, False]


def test_the_renderer_reads_the_fetched_copies(
    write_scene: Callable[..., Path], http_server: Server, tmp_path: Path, torch_one_thread: None
) -> None:
    scene = load_scene(_url_scene(write_scene, http_server))
    local = fetch_inputs(scene, tmp_path / "run")
    localized = localize_scene(scene, local)
    assert localized.init_image == local[http_server.url("init.png")]
    assert localized.direct_image_prompts[0].image == local[http_server.url("target.png")]
    ctx = build_context(localized, build_plan(localized), torch.device("cpu"))
    mask_path = str(local[http_server.url("mask.png")])
    assert ctx.targets.masks[(mask_path, False)].min() == 1.0  # the white mask, read from its copy
    assert str(local[http_server.url("ref.png")]) in ctx.targets.images


def test_video_source_url(write_scene: Callable[..., Path], http_server: Server, tmp_path: Path) -> None:
    (http_server.root / "clip.mp4").write_bytes(b"not fetched yet")
    scene = load_scene(write_scene(f"animation: video\nvideo_path: {http_server.url('clip.mp4')}\n"))
    assert [(u.field, u.url) for u in scene_urls(scene)] == [("video_path", http_server.url("clip.mp4"))]
    local = fetch_inputs(scene, tmp_path / "run")
    assert localize_scene(scene, local).video_path == local[http_server.url("clip.mp4")]


def test_unreachable_urls_fail_in_one_line_naming_the_field_and_the_url(
    write_scene: Callable[..., Path], http_server: Server, tmp_path: Path
) -> None:
    missing = http_server.url("missing.png")
    scene = load_scene(write_scene(f"init_image: {missing}\n"))
    with pytest.raises(PyttiError) as e404:
        check_reachable(scene)
    assert str(e404.value) == f"init_image: cannot fetch {missing}: HTTP 404 File not found"
    with pytest.raises(PyttiError, match="HTTP 404"):
        fetch_inputs(scene, tmp_path / "run")
    assert not (tmp_path / "run" / "inputs").exists() or not any((tmp_path / "run" / "inputs").iterdir())
    closed = _closed_port_url("m.png")
    scene = load_scene(write_scene(f'scenes:\n  - prompts: "a cat:1_[{closed}]"\n    frames: 2\n'))
    with pytest.raises(PyttiError) as refused:
        check_reachable(scene)
    message = str(refused.value)
    assert message.startswith(f"scenes[0] image mask: cannot fetch {closed}: ") and "\n" not in message
    with pytest.raises(PyttiError, match="has not been fetched"):
        fetched_inputs(scene, tmp_path / "run")


def test_fetched_inputs_are_not_probed_again(
    write_scene: Callable[..., Path], http_server: Server, tmp_path: Path
) -> None:
    _picture(http_server.root / "init.png", (1, 2, 3))
    scene = load_scene(write_scene(f"init_image: {http_server.url('init.png')}\n"))
    fetch_inputs(scene, tmp_path / "run")
    http_server.close()  # offline from now on
    check_reachable(scene, tmp_path / "run")  # the copy is there: no request
    with pytest.raises(PyttiError, match="cannot fetch"):
        check_reachable(scene, tmp_path / "elsewhere")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("init_image: https://\n", "init_image: malformed URL 'https://' (it needs a host and no spaces)"),
        ('video_path: "http://a b/c.mp4"\n', "video_path: malformed URL"),
        ("direct_image_prompts: [{image: 'https://h:x/a.png'}]\n", "malformed URL"),
        ("init_image: 5\n", "init_image: expected a file path"),
    ],
)
def test_malformed_urls_are_scene_errors(line: str, message: str) -> None:
    with pytest.raises(SceneError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_scene_text(line + 'scenes: [{prompts: "a:1", frames: 1}]\n')
