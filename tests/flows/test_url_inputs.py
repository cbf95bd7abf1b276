"""URL inputs through ``pytti render`` (issue 14.5): fetched into the run directory, a resume needs no
network, and an unreachable URL is one line and exit 2 before Prefect starts."""

from collections.abc import Callable
from pathlib import Path

import pytest

from flows.cli import main
from tests.engine.test_fetch import Server, _closed_port_url, _url_scene


def test_render_fetches_url_inputs_and_resumes_offline(
    write_scene: Callable[..., Path], http_server: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scene, out = _url_scene(write_scene, http_server), tmp_path / "run"
    argv = ["render", str(scene), "--out", str(out), "--device", "cpu"]
    assert main(argv) == 0
    fetched = sorted(p.name.split("-", 1)[1] for p in (out / "inputs").iterdir())
    assert fetched == ["init.png", "mask.png", "ref.png", "target.png"]
    assert set(http_server.requests) == {"/init.png", "/mask.png", "/ref.png", "/target.png"}
    http_server.close()  # offline: the resume reads the copies and keeps every frame
    capsys.readouterr()
    assert main(argv) == 0
    assert "4 kept" in capsys.readouterr().out


def test_unreachable_url_is_one_line_and_exit_2_before_prefect(
    write_scene: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = _closed_port_url("init.png")
    scene, out = write_scene(f"init_image: {url}\n"), tmp_path / "run"
    assert main(["render", str(scene), "--out", str(out), "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"init_image: cannot fetch {url}" in err, err
    assert not out.exists(), "nothing is written before the inputs are reachable"
