"""Stabilization losses as PyTTI defines them (issue 14.4), each shown by its effect on tensors.

- ``semantic`` pairs the image's cutouts with the target's by position (a perceptor that sees colour
  tells a picture from its mirror image, which one whole-image embedding cannot);
- ``flow`` outside video mode is PyTTI's ``TargetFlowLoss``: it rewards the motion, not the colours;
- ``direct`` is PyTTI's ``HSVLoss`` (``[R, G, B, S, V]``), ``direct_space: rgb`` the plain pixel loss;
- in video mode the losses pull toward the new source frame and ``flow`` toward the flow-warped output.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from pytti_engine.cutouts import CutoutConfig, sample_cutouts
from pytti_engine.motion import CameraSettings, MotionRuntime, apply_motion
from pytti_engine.optical_flow import LucasKanadeFlow
from pytti_engine.stabilization import Stabilizer, flow_loss
from pytti_engine.state import RenderState, make_optimizer
from pytti_engine.warps import Motion2D, warp_2d

SIZE = 48


class ColourPerceptor:
    """A perceptor that embeds a cutout as its mean colour (plus a constant, so no embedding is zero)."""

    device = torch.device("cpu")
    input_size = 8

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        mean = images.mean(dim=(2, 3))
        return torch.cat([mean, torch.full_like(mean[:, :1], 0.2)], dim=1)


def _halves(left: tuple[float, float, float], right: tuple[float, float, float]) -> torch.Tensor:
    image = torch.empty(1, 3, SIZE, SIZE)
    image[..., : SIZE // 2] = torch.tensor(left).view(1, 3, 1, 1)
    image[..., SIZE // 2 :] = torch.tensor(right).view(1, 3, 1, 1)
    return image


def _semantic(stab: Stabilizer, image: torch.Tensor, perceptor: ColourPerceptor, seed: int) -> float:
    config = CutoutConfig(cutouts=8, cut_pow=3.0, cut_size=8, augment=False, noise=0.0)
    cuts = sample_cutouts(image, config, torch.Generator().manual_seed(seed))
    embeds = perceptor.encode_image(cuts.images)
    target_config = CutoutConfig(cutouts=64, cut_pow=3.0, cut_size=8, augment=False, noise=0.0)
    loss = stab.semantic(2, 0, embeds, cuts, perceptor, target_config)  # type: ignore[arg-type]
    assert loss is not None
    return float(loss)


def test_semantic_stabilization_pairs_cutouts_by_position() -> None:
    red, blue = (1.0, 0.1, 0.1), (0.1, 0.1, 1.0)
    target = _halves(red, blue)
    stab = Stabilizer(seed=0)
    stab.begin_frame(2, {"semantic": 2.0}, target, None)
    perceptor = ColourPerceptor()
    same = [_semantic(stab, target, perceptor, seed) for seed in range(4)]
    mirrored = [_semantic(stab, _halves(blue, red), perceptor, seed) for seed in range(4)]
    # Both pictures have the same mean colour, so a comparison with one whole-image embedding cannot tell
    # them apart; paired by position, the mirror image is far from the target and the target itself near.
    assert max(same) < 2.0 * (0.7 + 0.05)  # weight · (distance + PyTTI's 0.7 offset)
    assert min(mirrored) > max(same) + 0.5
    # The target's cutouts are embedded once per frame and perceptor, from the seed: repeatable.
    again = Stabilizer(seed=0)
    again.begin_frame(2, {"semantic": 2.0}, target, None)
    assert _semantic(again, target, perceptor, 0) == same[0]


def _texture(shift: float = 0.0, size: int = SIZE) -> torch.Tensor:
    y, x = torch.meshgrid(
        torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32), indexing="ij"
    )
    x = x - shift
    channels = [
        torch.sin(x / 3 + c) * torch.cos(y / 4 - c) + 0.5 * torch.sin((x + 2 * y) / 6 + c) for c in range(3)
    ]
    return torch.stack(channels)[None] / 3 + 0.5


def test_flow_stabilization_rewards_the_camera_motion_not_the_colours() -> None:
    n = 32
    previous = _texture(size=n)
    motion = torch.zeros(1, 2, n, n)
    motion[:, 0] = -2.0  # content moved 2 px right: each new pixel came from 2 px to its left
    moved = _texture(2.0, size=n)  # the previous frame moved as the camera says
    dimmed = 0.4 * moved + 0.05  # moved right, but duller and darker
    estimator = LucasKanadeFlow()
    inner = torch.zeros(1, 1, n, n)
    inner[..., 6:-6, 6:-6] = 1.0

    def flow(image: torch.Tensor) -> float:
        return float(flow_loss(estimator, image, previous, motion, inner))

    def direct(image: torch.Tensor) -> float:
        return float(((image - moved) ** 2 * inner).mean())

    assert flow(moved) < 0.05 * flow(previous)
    assert flow(dimmed) < 0.1 * flow(previous)  # the motion is right: colours do not matter
    assert direct(dimmed) > direct(previous)  # whereas direct prefers the unmoved frame
    # Its gradient moves a still frame toward the motion: a few Adam steps on the flow loss alone.
    image = previous.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([image], lr=0.02)
    before = flow(previous)
    for _ in range(8):
        optimizer.zero_grad()
        flow_loss(estimator, image, previous, motion, inner).backward()
        optimizer.step()
    assert flow(image.detach()) < 0.7 * before


def test_direct_stabilization_is_pytti_hsv_loss_unless_rgb() -> None:
    target = torch.zeros(1, 3, 4, 4)
    target[:, 0] = 1.0  # pure red: saturation 1, value 1
    darker = target * 0.8  # (0.8, 0, 0): value drops to 0.8
    yellower = target.clone()
    yellower[:, 1] = 0.2  # (1, 0.2, 0): the same RGB error, saturation and value kept
    losses = {}
    for space in ("hsv", "rgb"):
        stab = Stabilizer(direct_space=space)
        stab.begin_frame(2, {"direct": 1.0}, target, None)
        losses[space] = [float(stab.pixel_loss(x, 2)) for x in (darker, yellower)]  # type: ignore[arg-type]
    rgb_error = 0.04 / 3
    assert losses["rgb"] == pytest.approx([rgb_error, rgb_error])
    # HSV: the mean over R, G, B, S, V: the darker one also loses value, the yellower one nothing more.
    assert losses["hsv"] == pytest.approx([(0.04 + 0.04) / 5, 0.04 / 5])
    assert Stabilizer().direct_space == "hsv"


class _Frame:
    def __init__(self, index: int, weights: dict[str, float]) -> None:
        self.index, self.stabilization = index, weights
        self.translate_x = self.translate_y = self.rotate_2d = 0.0
        self.zoom = 1.0


class _Settings:
    def __init__(self, animation: str) -> None:
        self.animation, self.infill_mode, self.sampling_mode = animation, "smear", "bilinear"


def test_2d_flow_loss_gets_the_warp_own_flow_and_video_losses_the_source() -> None:
    from pytti_engine.image_params import RGBImage

    picture = _texture()
    image = RGBImage(picture.clone())
    state = RenderState(image=image, optimizer=make_optimizer(image, 0.01))
    stab = Stabilizer(flow_model=LucasKanadeFlow())
    runtime = MotionRuntime(camera=CameraSettings(), stabilizer=stab)
    frame = _Frame(2, {"flow": 1.0, "direct": 1.0})
    frame.translate_x = 2.0
    apply_motion(state, frame, _Settings("2d"), runtime)
    target = stab.target_for(2)
    assert target is not None and target.motion is not None and target.motion_valid is not None
    torch.testing.assert_close(target.previous, picture)
    torch.testing.assert_close(
        target.motion[..., 4:-4], torch.tensor([-2.0, 0.0]).view(1, 2, 1, 1).expand(1, 2, SIZE, SIZE - 8)
    )
    assert float(target.motion_valid[..., :2].max()) == 0.0  # those came from outside the frame
    warped = warp_2d(picture, Motion2D(translate_x=2.0), infill="smear")
    torch.testing.assert_close(target.image, warped)
    assert math.isfinite(float(stab.pixel_loss(warped, 2)))  # type: ignore[arg-type]

    # Video: direct (and edge, depth, semantic) pull toward the new source frame, flow toward the
    # flow-warped output.
    from tests.engine.test_video_reencode import _block_mask, _video

    video = _video(_block_mask())
    image = RGBImage(torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(5)))
    state = RenderState(image=image, optimizer=make_optimizer(image, 0.01))
    stab = Stabilizer()
    runtime = MotionRuntime(camera=CameraSettings(), video=video, stabilizer=stab)
    outcome = apply_motion(state, _Frame(2, {"flow": 1.0, "direct": 1.0}), _Settings("video"), runtime)
    target = stab.target_for(2)
    assert target is not None and outcome.source is not None
    torch.testing.assert_close(target.image, outcome.source)
    torch.testing.assert_close(target.flow_image, outcome.target)
    assert not torch.equal(outcome.source, outcome.target)


def test_direct_stabilization_of_a_vqgan_is_pytti_latent_loss(vqgan_models_dir: Path) -> None:
    from pytti_engine.image_params import ImageConfig, make_image
    from pytti_engine.image_params.vqgan import latent_loss, load_vqgan
    from pytti_engine.vqgan_files import find_vqgan_files

    model = load_vqgan(find_vqgan_files("imagenet", vqgan_models_dir))
    config = ImageConfig(image_model="vqgan", width=32, height=32, vqgan_model="imagenet")
    image = make_image(config, torch.Generator().manual_seed(0), torch.device("cpu"), vqgan=model)
    target = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    stab = Stabilizer()
    stab.begin_frame(2, {"direct": 3.0}, target, None)
    decoded = image.decode()
    loss = stab.pixel_loss(decoded, 2, image)
    assert loss is not None
    expected = 3.0 * latent_loss(image, decoded, image.encode_target(target), target)  # type: ignore[arg-type]
    torch.testing.assert_close(loss, expected)
    loss.backward()
    assert image.z.grad is not None and image.z.grad.abs().sum() > 0  # type: ignore[union-attr]
