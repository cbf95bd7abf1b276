"""What a render shows in the Prefect UI: one live latest-frame view, rounded tables, a plan chart,
where the video is with a playable preview, and keys that tell renders apart."""

import base64
import io
import json
import re
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

from flows.render_scene import RenderParams, render_scene

MOVING = 'title: "Lighthouse: storm"\nanimation: 2d\ntranslate_x: 2\nrotate_2d: "3 * t"\n'


def _render_artifacts(scene: Path, out: Path) -> list[Any]:
    state = render_scene(
        RenderParams(scene_path=str(scene), out_dir=str(out), device="cpu"), return_state=True
    )
    assert state.is_completed(), state.message
    with get_client(sync_client=True) as client:
        return client.read_artifacts(
            artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id])
            )
        )


def _image(data_uri: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(data_uri.split(",", 1)[1])))


def test_one_latest_frame_view_rounded_tables_chart_and_video(
    write_scene: Callable[..., Path], tmp_path: Path
) -> None:
    scene = write_scene(MOVING, name="art.yaml", frames=3, size=32)
    artifacts = _render_artifacts(scene, tmp_path / "run")
    kinds = [
        a.key.rsplit("-", 1)[-1] if not a.key.endswith("plan-chart") else "plan-chart" for a in artifacts
    ]
    # one card per kind: the latest frame was updated in place (3 updates), not created 3 times
    assert sorted(kinds) == sorted(["progress", "latest", "plan-chart", "frames", "plan", "video"])
    key_prefixes = {a.key.rsplit("-", 1)[0].removesuffix("-plan") for a in artifacts}
    assert len(key_prefixes) == 1 and re.fullmatch(r"art-[0-9a-f]{8}", key_prefixes.pop())
    by_kind = dict(zip(kinds, artifacts, strict=True))

    assert by_kind["progress"].data == 100.0
    assert by_kind["progress"].description == "Lighthouse: storm: frame 3/3 (100 %)"
    assert by_kind["latest"].description == "Lighthouse: storm: latest frame 3/3 (100 %)"
    latest = str(by_kind["latest"].data)
    assert latest.startswith("### Lighthouse: storm: frame 3/3 (100 %)")
    frame = _image(re.search(r"\(data:image/jpeg;base64,[^)]+", latest).group(0)[1:])
    assert frame.size == (384, 384), "a 32 px frame is enlarged for the UI"

    rows = json.loads(by_kind["frames"].data)
    assert [r["frame"] for r in rows] == [1, 2, 3]
    for r in rows:
        assert len(re.sub(r"[-.]|e.*", "", f"{r['loss']}").lstrip("0")) <= 4, r["loss"]
        assert r["seconds"] == round(r["seconds"], 2)

    chart = _image(re.search(r"\(data:image/png;base64,[^)]+", str(by_kind["plan-chart"].data)).group(0)[1:])
    assert chart.width >= 600

    video = str(by_kind["video"].data)
    path = (tmp_path / "run" / "art.mp4").resolve()
    assert f"**host** `{socket.gethostname()}` · **path** `{path}`" in video
    assert "file://" not in video
    preview = _image(re.search(r"\(data:image/gif;base64,[^)]+", video).group(0)[1:])
    assert preview.n_frames == 3 and preview.info["loop"] == 0

    log = (tmp_path / "run" / "render.log").read_text()  # the full log stays with the render
    assert "frame-000003: frame 3/3 rendered" in log and "assemble-video" in log


def test_renders_of_same_named_scenes_into_different_folders_get_different_keys(
    write_scene: Callable[..., Path], tmp_path: Path
) -> None:
    from tasks.publish import artifact_key
    from tasks.records import RunRef

    def ref(run_dir: Path) -> RunRef:
        return RunRef(
            run_dir=str(run_dir),
            scene_path="x",
            device="cpu",
            frame_count=1,
            video_stem="Test",
            scene_sha256="0",
        )

    alice, bob = (
        artifact_key(ref(tmp_path / "alice"), "latest"),
        artifact_key(ref(tmp_path / "bob"), "latest"),
    )
    assert alice != bob and alice.startswith("test-") and alice.endswith("-latest")
    assert artifact_key(ref(tmp_path / "alice"), "latest") == alice  # stable for one folder
