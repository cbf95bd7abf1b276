"""Optical flow estimators for video-source mode: OpenCV DIS (default, no weights) and torchvision RAFT.

Flows follow :mod:`pytti_engine.warps.flow`'s convention: :func:`backward_flow` of frames ``(a, b)``
returns ``flow`` with ``b(p) ≈ a(p + flow(p))``. DIS needs ``opencv-python-headless``
(``pip install pytti-flow[flow]``), imported only when a DIS estimator is made. RAFT needs a weights
file the user supplies (torchvision's ``raft_small`` or ``raft_large`` state dict); nothing is
downloaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import torch
import torch.nn.functional as F

from pytti_engine.errors import ModelLoadError

FlowModelName = Literal["dis", "raft"]
DisPreset = Literal["ultrafast", "fast", "medium"]


class FlowEstimator(Protocol):
    """Backward optical flow between two RGB frames."""

    def __call__(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """``(H, W, 3)`` uint8 frames -> ``(H, W, 2)`` float32 flow with ``b(p) ≈ a(p + flow(p))``."""
        ...


@dataclass
class DISFlow:
    """OpenCV's Dense Inverse Search flow (Kroeger et al. 2016) on greyscale frames; ~11 ms at 512²
    (MEDIUM preset, 2 CPU cores).

    Attributes:
        preset: ``ultrafast`` | ``fast`` | ``medium``.
    """

    preset: DisPreset = "medium"

    def __post_init__(self) -> None:
        cv2 = _cv2()
        presets = {
            "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
            "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
            "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
        }
        if self.preset not in presets:
            raise ValueError(f"unknown DIS preset {self.preset!r}; expected ultrafast, fast or medium")
        self._dis = cv2.DISOpticalFlow_create(presets[self.preset])
        self._gray = cv2.COLOR_RGB2GRAY

    def __call__(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Backward flow ``(H, W, 2)`` float32: ``b(p) ≈ a(p + flow(p))``."""
        cv2 = _cv2()
        _check_pair(a, b)
        gray_a = cv2.cvtColor(np.ascontiguousarray(a), self._gray)
        gray_b = cv2.cvtColor(np.ascontiguousarray(b), self._gray)
        # DIS's calc(I0, I1) gives I0(p) ≈ I1(p + flow(p)); with I0 = b, I1 = a that is our backward flow.
        return self._dis.calc(gray_b, gray_a, None).astype(np.float32)


@dataclass
class RAFTFlow:
    """torchvision RAFT with user-supplied weights (inputs padded to multiples of 8, at least 128, in [-1, 1]).

    Attributes:
        model: a ``torchvision.models.optical_flow.RAFT`` in eval mode.
        device: where it runs.
        iterations: refinement iterations.
    """

    model: Any
    device: torch.device
    iterations: int = 12

    @torch.no_grad()
    def __call__(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Backward flow ``(H, W, 2)`` float32: ``b(p) ≈ a(p + flow(p))``."""
        _check_pair(a, b)
        height, width = a.shape[:2]
        # RAFT needs sides that are multiples of 8 and at least 128 (its correlation pyramid).
        pad = (0, max(128, width + (-width) % 8) - width, 0, max(128, height + (-height) % 8) - height)

        def prep(x: np.ndarray) -> torch.Tensor:
            t = torch.from_numpy(np.ascontiguousarray(x)).permute(2, 0, 1)[None].float().to(self.device)
            return F.pad(t / 127.5 - 1.0, pad, mode="replicate")

        # RAFT(img1, img2) is the flow from img1 to img2: img1(p) ≈ img2(p + flow(p)).
        flows = self.model(prep(b), prep(a), num_flow_updates=self.iterations)
        flow = flows[-1][0, :, :height, :width]
        return flow.permute(1, 2, 0).cpu().numpy().astype(np.float32)


def load_flow_model(
    name: FlowModelName, device: torch.device, *, weights: Path | None = None, preset: DisPreset = "medium"
) -> FlowEstimator:
    """Make the scene's flow estimator.

    Args:
        name: ``dis`` or ``raft``.
        device: where RAFT runs (DIS runs on the CPU).
        weights: RAFT weights (a torchvision ``raft_small``/``raft_large`` state dict file).
        preset: DIS quality preset.

    Raises:
        ModelLoadError: opencv missing (DIS), no or unreadable weights (RAFT).
    """
    if name == "dis":
        return DISFlow(preset)
    if name == "raft":
        if weights is None:
            raise ModelLoadError("flow_model: raft needs flow_weights (a torchvision RAFT .pth file)")
        return RAFTFlow(_load_raft(weights, device), device)
    raise ValueError(f"unknown flow model {name!r}; expected dis or raft")


def _load_raft(weights: Path, device: torch.device) -> Any:
    from torchvision.models.optical_flow import raft_large, raft_small

    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, ValueError) as e:
        raise ModelLoadError(f"cannot read RAFT weights {weights}: {e}") from e
    errors: list[str] = []
    for build in (raft_small, raft_large):
        model = build(weights=None, progress=False)
        try:
            model.load_state_dict(state)
        except RuntimeError as e:
            errors.append(f"{build.__name__}: {str(e).splitlines()[0]}")
            continue
        return model.to(device).eval()
    raise ModelLoadError(
        f"{weights} is not a torchvision raft_small or raft_large state dict ({'; '.join(errors)})"
    )


def backward_flow(estimator: FlowEstimator, a: np.ndarray, b: np.ndarray) -> torch.Tensor:
    """The backward flow from ``a`` to ``b`` as a tensor.

    Returns:
        :math:`(1, 2, H, W)` float32 pixels (see :mod:`pytti_engine.warps.flow`).
    """
    return torch.from_numpy(estimator(a, b)).permute(2, 0, 1).unsqueeze(0).contiguous()


def _check_pair(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape != b.shape or a.ndim != 3 or a.shape[2] != 3 or a.dtype != np.uint8:
        raise ValueError(
            f"flow needs two (H, W, 3) uint8 frames of one size, got {a.shape} {a.dtype} and {b.shape}"
        )


def _cv2() -> Any:
    try:
        import cv2
    except ImportError as e:
        raise ModelLoadError("DIS optical flow needs opencv: install pytti-flow[flow]") from e
    return cv2
