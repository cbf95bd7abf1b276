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


# ---- differentiable flow (the 3D/2D flow stabilization loss) ----------------------------------------


class DifferentiableFlow(Protocol):
    """Backward optical flow between two image tensors, differentiable w.r.t. the first."""

    def __call__(self, current: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
        """:math:`(1, 3, H, W)` images in [0, 1] -> :math:`(1, 2, H, W)` flow with
        ``current(p) ≈ previous(p + flow(p))`` (pixels, channel 0 = x)."""
        ...


@dataclass(frozen=True)
class LucasKanadeFlow:
    """Pyramidal Lucas–Kanade flow in plain torch: differentiable, no weights (the default estimator of
    the ``flow`` stabilization loss outside video mode, where PyTTI runs GMA with gradient).

    On the luma (smoothed, and standardized per image so that a global change of brightness or
    contrast is not motion): at each level of an area-averaged pyramid (coarse to fine) the previous frame is warped
    by the current flow estimate, and the flow is refined ``iterations`` times by the least-squares
    solution of the brightness-constancy equations ``I_x·u + I_y·v + I_t = 0`` summed over a
    ``window × window`` box (a small ridge keeps flat regions at zero). Good for the smooth, moderate
    motions of a camera between two frames (a few pixels per pyramid level).

    Attributes:
        levels: pyramid levels (each halves the size; stops at 8 pixels).
        iterations: refinements per level.
        window: side of the summation window (pixels, odd).
        ridge: regularization, relative to the mean squared gradient.
        smooth: Gaussian sigma (pixels) applied to both lumas first.
    """

    levels: int = 3
    iterations: int = 3
    window: int = 7
    ridge: float = 1e-2
    smooth: float = 1.0

    def __call__(self, current: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
        """Backward flow: ``current(p) ≈ previous(p + flow(p))``; :math:`(1, 2, H, W)` pixels."""
        from kornia.color import rgb_to_grayscale

        if current.shape != previous.shape or current.ndim != 4 or current.shape[1] != 3:
            raise ValueError(f"flow needs two (B, 3, H, W) images of one size, got {tuple(current.shape)}")
        from kornia.filters import gaussian_blur2d

        def luma(x: torch.Tensor) -> torch.Tensor:
            # Smoothed (the 3-tap gradients need band-limited input) and standardized per image, so a
            # global change of brightness or contrast is not mistaken for motion.
            sigma = (self.smooth, self.smooth)
            y = gaussian_blur2d(rgb_to_grayscale(x), (5, 5), sigma, border_type="replicate")
            mean = y.mean(dim=(1, 2, 3), keepdim=True)
            return (y - mean) / y.std(dim=(1, 2, 3), keepdim=True).clamp_min(1e-3)

        pyramid = [(luma(current), luma(previous.to(current)))]
        while len(pyramid) < self.levels and min(pyramid[-1][0].shape[-2:]) >= 16:
            pyramid.append(tuple(F.avg_pool2d(x, 2) for x in pyramid[-1]))  # type: ignore[arg-type]
        flow = current.new_zeros(current.shape[0], 2, *pyramid[-1][0].shape[-2:])
        for level, (target, source) in enumerate(reversed(pyramid)):
            if level:
                scale = flow.new_tensor(
                    [target.shape[-1] / flow.shape[-1], target.shape[-2] / flow.shape[-2]]
                )
                flow = F.interpolate(flow, size=target.shape[-2:], mode="bilinear", align_corners=True)
                flow = flow * scale.view(1, 2, 1, 1)
            for _ in range(self.iterations):
                # The window sums assume one motion per window: keep the estimate that smooth, or
                # re-warping by a noisy field amplifies the noise from one iteration to the next.
                flow = self._box(flow + self._step(target, source, flow))
        return flow

    def _box(self, x: torch.Tensor) -> torch.Tensor:
        """Mean over a ``window × window`` box, separably (two 1-D means), edges averaged over what exists."""
        k = self.window
        x = F.avg_pool2d(x, (k, 1), stride=1, padding=(k // 2, 0), count_include_pad=False)
        return F.avg_pool2d(x, (1, k), stride=1, padding=(0, k // 2), count_include_pad=False)

    def _step(self, target: torch.Tensor, source: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
        from pytti_engine.warps.flow import flow_warp

        warped = flow_warp(source, flow, padding="smear", sampling="bilinear")
        padded = F.pad(warped, (1, 1, 1, 1), mode="replicate")
        gx = (padded[..., 1:-1, 2:] - padded[..., 1:-1, :-2]) / 2  # central differences
        gy = (padded[..., 2:, 1:-1] - padded[..., :-2, 1:-1]) / 2
        dt = warped - target
        sums = self._box(torch.cat([gx * gx, gx * gy, gy * gy, gx * dt, gy * dt], dim=1))
        sxx, sxy, syy, sxt, syt = sums.split(1, dim=1)
        ridge = self.ridge * (sxx + syy).mean(dim=(1, 2, 3), keepdim=True).clamp_min(1e-12)
        a, b, d = sxx + ridge, sxy, syy + ridge
        det = a * d - b * b
        du = -(d * sxt - b * syt) / det
        dv = -(a * syt - b * sxt) / det
        return torch.cat([du, dv], dim=1)


def differentiable_flow(
    name: FlowModelName, device: torch.device, *, weights: Path | None = None
) -> DifferentiableFlow:
    """The estimator of the ``flow`` stabilization loss outside video mode.

    ``raft`` (with ``weights``): torchvision RAFT with gradient, 3 refinement iterations (PyTTI runs GMA
    with 3); anything else: :class:`LucasKanadeFlow` (DIS is not differentiable).

    Raises:
        ModelLoadError: ``raft`` without readable weights.
    """
    if name == "raft":
        if weights is None:
            raise ModelLoadError("flow_model: raft needs flow_weights (a torchvision RAFT .pth file)")
        model = _load_raft(weights, device).requires_grad_(False)
        return RAFTDifferentiable(model, iterations=3)
    return LucasKanadeFlow()


@dataclass
class RAFTDifferentiable:
    """torchvision RAFT as a :class:`DifferentiableFlow` (gradient flows into ``current``).

    Attributes:
        model: a ``torchvision.models.optical_flow.RAFT`` in eval mode, parameters frozen.
        iterations: refinement iterations.
    """

    model: Any
    iterations: int = 3

    def __call__(self, current: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
        """Backward flow ``current(p) ≈ previous(p + flow(p))``, :math:`(1, 2, H, W)` pixels."""
        height, width = current.shape[-2:]
        pad = (0, max(128, width + (-width) % 8) - width, 0, max(128, height + (-height) % 8) - height)

        def prep(x: torch.Tensor) -> torch.Tensor:
            return F.pad(x * 2.0 - 1.0, pad, mode="replicate")

        # RAFT(img1, img2): img1(p) ≈ img2(p + flow(p)).
        flows = self.model(prep(current), prep(previous.to(current)), num_flow_updates=self.iterations)
        return flows[-1][..., :height, :width]
