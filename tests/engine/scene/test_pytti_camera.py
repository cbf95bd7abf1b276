"""``pytti import-pytti`` 3D cameras move pixels exactly as pytti-core's own formulas do, frame by frame.

``pytti_core_sampling`` below is pytti-core's 3D warp (``Transforms.zoom_3d`` and ``render_image_3d``, with
PyGLM's ``perspective``, ``mat4_cast`` and ``translate``) written out in numpy, independently of the
engine: for every output pixel, where pytti samples the previous frame. Each synthetic config (pure yaw,
pitch, roll, pan, dolly, and all of them with ``lock_camera`` on a slanted depth map) is converted,
loaded and planned, and the engine's 3D grid for frames 2..4 is compared with pytti's at the same ``t``.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from pytti_engine.depth import DepthProvider
from pytti_engine.motion import CameraSettings, MotionRuntime, frame_motion_3d, grid_3d
from pytti_engine.scene import build_plan, load_scene_text
from pytti_engine.scene.pytti_import import convert_pytti_text

H, W = 96, 128  # pytti's motion scales with the image height (its depth units are 2/H)
FPS = 12

# pytti's motion values at time t: (translate_x, translate_y, translate_z_3d, rotate_3d quaternion).
Motion = Callable[[float], tuple[float, float, float, tuple[float, float, float, float]]]


def _quat(angle_deg: float, axis: tuple[float, float, float]) -> tuple[float, float, float, float]:
    half = math.radians(angle_deg) / 2
    return (math.cos(half), *(math.sin(half) * a for a in axis))


def _perspective(fovy: float, aspect: float, near: float, far: float) -> np.ndarray:
    """``glm.perspective`` (right-handed, depth -1..1) as a row-major matrix."""
    t = math.tan(fovy / 2)
    return np.array(
        [
            [1 / (aspect * t), 0, 0, 0],
            [0, 1 / t, 0, 0],
            [0, 0, -(far + near) / (far - near), -2 * far * near / (far - near)],
            [0, 0, -1, 0],
        ]
    )


def _mat4_cast(q: tuple[float, float, float, float]) -> np.ndarray:
    """``glm.mat4_cast(glm.quat(w, x, y, z))`` as a row-major matrix (pytti never normalizes)."""
    w, x, y, z = q
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y), 0],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x), 0],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y), 0],
            [0, 0, 0, 1],
        ]
    )


def pytti_core_sampling(
    depth: np.ndarray,
    fov: float,
    translate: tuple[float, float, float],
    quaternion: tuple[float, float, float, float],
    lock_camera: bool,
) -> np.ndarray:
    """pytti-core's ``zoom_3d``: :math:`(H, W, 2)` pixel coordinates (x, y) each output pixel samples.

    ``depth`` is pytti's depth map in its units (``np.interp`` of AdaBins metres onto near..far).
    """
    height, width = depth.shape
    px, aspect = 2 / height, width / height
    tx, ty, tz = translate
    p = _perspective(math.radians(fov), aspect, 0.1, 4)
    shift = np.eye(4)
    shift[:3, 3] = (tx * px, -ty * px, tz * px)  # glm.translate(mat4(1), vec3(tx·px, -ty·px, tz·px))
    t = _mat4_cast(quaternion) @ shift
    y, x = np.meshgrid(np.linspace(-1, 1, height), np.linspace(-aspect, aspect, width), indexing="ij")
    view = np.stack([x, y, -depth * px, np.ones_like(x)])  # (4, H, W)
    clip = np.einsum("ij,jhw->ihw", p, view)
    clip = clip / clip[3]
    moved = np.einsum("ij,jhw->ihw", p @ t, view)
    moved = moved / moved[3]
    offset = (moved - clip)[:2]
    if lock_camera:
        offset = offset - offset.mean(axis=(1, 2), keepdims=True)
    u = np.linspace(-1, 1, width)[None, :] - offset[0]  # grid = identity - offset (align_corners=True)
    v = np.linspace(-1, 1, height)[:, None] - offset[1]
    return np.stack([(u + 1) * (width - 1) / 2, (v + 1) * (height - 1) / 2], axis=-1)


def _config(body: str, lock: bool) -> str:
    head = f"""\
        scenes: a
        animation_mode: 3D
        width: {W}
        height: {H}
        frames_per_second: {FPS}
        steps_per_frame: 2
        steps_per_scene: 8
        seed: 1
        pre_animation_steps: 0
        lock_camera: {str(lock).lower()}
        """
    return textwrap.dedent(head) + textwrap.dedent(body)


CASES: dict[str, tuple[str, Motion]] = {
    "yaw": (
        "rotate_3d: '[cos(radians(1 + t)), 0, sin(radians(1 + t)), 0]'\n",
        lambda t: (0, 0, 0, (math.cos(math.radians(1 + t)), 0, math.sin(math.radians(1 + t)), 0)),
    ),
    "pitch": (
        "rotate_3d: '[cos(radians(1.5)), sin(radians(1.5)), 0, 0]'\n",
        lambda t: (0, 0, 0, _quat(3, (1, 0, 0))),
    ),
    "roll": (
        "rotate_3d: '[cos(radians(15)), 0, 0, sin(radians(15))]'\n",
        lambda t: (0, 0, 0, _quat(30, (0, 0, 1))),
    ),
    "pan": (
        "translate_x: '40 + 30*sin(t)'\ntranslate_y: '-25'\n",
        lambda t: (40 + 30 * math.sin(t), -25, 0, (1, 0, 0, 0)),
    ),
    "dolly": ("translate_z_3d: '600 + 400*t'\n", lambda t: (0, 0, 600 + 400 * t, (1, 0, 0, 0))),
    "demo": (  # pytti-core's demo.yaml camera (orbit: yaw + roll against a sideways move, and a dolly)
        "translate_x: '-1700*sin(radians(1.5))'\ntranslate_z_3d: '(50+10*t)*sin(t/10*pi)**2 + 20'\n"
        "rotate_3d: '[cos(radians(1.5)), 0, -sin(radians(1.5))/sqrt(2), sin(radians(1.5))/sqrt(2)]'\n",
        lambda t: (
            -1700 * math.sin(math.radians(1.5)),
            0,
            (50 + 10 * t) * math.sin(t / 10 * math.pi) ** 2 + 20,
            (
                math.cos(math.radians(1.5)),
                0,
                -math.sin(math.radians(1.5)) / math.sqrt(2),
                math.sin(math.radians(1.5)) / math.sqrt(2),
            ),
        ),
    ),
}


def _compare(
    scene_text: str, motion: Motion, depth: np.ndarray, provider: DepthProvider, lock: bool
) -> float:
    """The largest difference (pixels) between the engine's and pytti's sampling, frames 2..4; asserts that
    the camera visibly moves."""
    scene = load_scene_text(scene_text)
    plan = build_plan(scene)
    runtime = MotionRuntime(camera=CameraSettings.from_scene(scene), depth=provider)
    image = torch.rand(1, 3, H, W, generator=torch.Generator().manual_seed(0))
    worst, largest = 0.0, 0.0
    identity = np.stack(np.meshgrid(np.arange(W), np.arange(H), indexing="xy"), axis=-1)
    for frame in plan.frames[1:4]:
        ours = grid_3d(image, frame_motion_3d(frame), runtime)[0].double().numpy()
        tx, ty, tz, q = motion(frame.t)
        theirs = pytti_core_sampling(depth, scene.field_of_view, (tx, ty, tz), q, lock)
        worst = max(worst, float(np.abs(ours - theirs).max()))
        largest = max(largest, float(np.abs(theirs - identity).max()))
    assert largest > 0.5, f"the synthetic camera barely moves ({largest:.3f} px)"
    return worst


@pytest.mark.parametrize("name", list(CASES))
def test_flat_import_moves_pixels_as_pytti_core(name: str) -> None:
    body, motion = CASES[name]
    text, _ = convert_pytti_text(_config(body, lock=False))
    scene = load_scene_text(text)
    assert scene.camera_model == "pytti" and scene.depth_model == "flat"
    # pytti's depth of a flat AdaBins picture 3 m away, with its default planes 1 .. 10000
    depth = np.full((H, W), np.interp(3.0, (1e-3, 10), (1, 10000)))
    provider = CameraSettings.from_scene(scene).depth_provider(torch.device("cpu"))
    assert _compare(text, motion, depth, provider, lock=False) < 2e-3


def _fake_depth_folder(path: Path) -> Path:
    """Enough of a transformers depth folder to pass the scene's checks (it is never loaded here)."""
    path.mkdir()
    (path / "config.json").write_text('{"architectures": ["DepthAnythingForDepthEstimation"]}')
    (path / "model.safetensors").write_bytes(b"")
    return path


# Pure yaw and pitch are left out here: at pytti's depths they are nearly uniform shifts, and pytti's
# lock_camera subtracts all but ~1 % of them (0.02 px here), too little to compare.
@pytest.mark.parametrize("name", ["roll", "pan", "dolly", "demo"])
def test_import_with_a_depth_model_keeps_lock_camera_and_moves_as_pytti_core(
    name: str, tmp_path: Path
) -> None:
    body, motion = CASES[name]
    folder = _fake_depth_folder(tmp_path / "depth")
    text, _ = convert_pytti_text(_config(body, lock=True), depth_model=str(folder))
    scene = load_scene_text(text)
    assert scene.lock_camera and scene.camera_model == "pytti"
    # A slanted depth map spanning the imported planes (PyTTI's 1 m .. 10 m), given to both sides.
    inverse = np.linspace(1 / scene.far_plane, 1 / scene.near_plane, W)[None, :].repeat(H, axis=0)
    depth = 1 / inverse
    disparity = torch.from_numpy(inverse).float()[None, None]
    provider = DepthProvider(lambda image: disparity, scene.near_plane, scene.far_plane, scene.field_of_view)
    assert _compare(text, motion, depth, provider, lock=True) < 2e-3


def test_import_text_converts_the_y_down_frame_and_pytti_units() -> None:
    text, warnings = convert_pytti_text(
        _config(
            "rotate_3d: '[cos(radians(5)), sin(radians(1)), 0.2, -np.sin(radians(5))]'\n"
            "translate_z_3d: '0.05 * mu'\nnear_plane: 2\nfar_plane: 20002\n",
            lock=True,
        )
    )
    scene = yaml.safe_load(text)
    assert scene["rotate_3d"] == "[cos(radians(5)), -(sin(radians(1))), 0.2, sin(radians(5))]"
    assert scene["camera_model"] == "pytti" and scene["depth_model"] == "flat"
    assert scene["flat_depth"] == pytest.approx(np.interp(3.0, (1e-3, 10), (2, 20002)), abs=1e-3)
    assert scene["translate_z"] == f"0.05 * {scene['flat_depth']:g}"
    assert scene["lock_camera"] is False
    joined = "\n".join(warnings)
    assert "lock_camera: PyTTI subtracts the mean motion" in joined
    assert "depth statistics r, R, mu" in joined
    assert "near_plane" not in scene  # the flat depth already carries the units


def test_import_text_with_a_depth_model_maps_pytti_planes() -> None:
    text, warnings = convert_pytti_text(_config("translate_x: 5\n", lock=True), depth_model="/models/da")
    scene = yaml.safe_load(text)
    assert scene["depth_model"] == "/models/da" and "flat_depth" not in scene
    assert scene["near_plane"] == pytest.approx(np.interp(1.0, (1e-3, 10), (1, 10000)), abs=1e-3)
    assert scene["far_plane"] == 10000 and "lock_camera" not in scene  # true, our default too
    assert any("mapped to PyTTI's 1 m .. 10 m" in w for w in warnings)


def test_2d_flow_weight_is_dropped_as_pytti_ignores_it() -> None:
    text, warnings = convert_pytti_text(
        "scenes: a\nanimation_mode: 2D\nflow_stabilization_weight: '2'\ndirect_stabilization_weight: 1\n"
    )
    assert yaml.safe_load(text)["stabilization"] == {"direct": 1}
    assert any("pytti has no flow loss in 2D mode" in w for w in warnings)
