"""Scenes and models kept resident per process, so they load once per render, not once per frame."""

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch

from pytti_engine.fetch import fetched_inputs, localize_scene, url_files
from pytti_engine.image_params.vqgan import VQGANModel, load_vqgan
from pytti_engine.inputs import InputsRecord
from pytti_engine.job import build_context, plan_inputs, plan_keys
from pytti_engine.metrics import MetricsWriter, open_metrics
from pytti_engine.perceptors import Perceptor, load_perceptor
from pytti_engine.render import RenderContext
from pytti_engine.rundir import RunPaths, fork_base_keys
from pytti_engine.scene import Plan, Scene, build_plan, load_scene
from pytti_engine.state import RenderState
from pytti_engine.vqgan_files import VQGANFiles
from tasks.records import RunRef


@dataclass(frozen=True)
class Job:
    """A loaded render: scene, plan, frame keys and run paths (no models)."""

    scene: Scene
    plan: Plan
    keys: tuple[str, ...]
    paths: RunPaths


@lru_cache(maxsize=8)
def perceptor(model: str, pretrained: str | None, device: str, quick_gelu: bool | None = None) -> Perceptor:
    """Load a perceptor once per process, device and activation."""
    return load_perceptor(model, pretrained, device=torch.device(device), quick_gelu=quick_gelu)


def _cached_perceptor(
    model: str, pretrained: str | None, device: torch.device, quick_gelu: bool | None
) -> Perceptor:
    return perceptor(model, pretrained, str(device), quick_gelu)


@lru_cache(maxsize=2)
def vqgan(files: VQGANFiles, mtime_ns: int, device: str) -> VQGANModel:
    """Load a VQGAN once per process, device and checkpoint version."""
    return load_vqgan(files, torch.device(device))


def _cached_vqgan(files: VQGANFiles, device: torch.device) -> VQGANModel:
    return vqgan(files, files.checkpoint.stat().st_mtime_ns, str(device))


@lru_cache(maxsize=4)
def _job(
    scene_path: str, overrides: tuple[str, ...], scene_sha256: str, inputs_sha256: str, run_dir: str
) -> Job:
    scene = load_scene(scene_path, overrides)
    plan = build_plan(scene)
    paths = RunPaths(Path(run_dir))
    hashes = InputsRecord.read(paths.inputs_json).hashes  # written by prepare_run
    local = fetched_inputs(scene, paths.root)  # URL inputs, fetched by prepare_run
    inputs = plan_inputs(scene, plan, hashes.sha256, url_files(local))
    keys = plan_keys(scene, plan, fork_base_keys(paths), inputs, hashes.sha256)  # URLs named as URLs
    if local:  # the renderer reads the fetched copies
        scene = localize_scene(scene, local)
        plan = build_plan(scene)
    return Job(scene=scene, plan=plan, keys=tuple(keys), paths=paths)


@lru_cache(maxsize=2)
def _context(
    scene_path: str,
    overrides: tuple[str, ...],
    scene_sha256: str,
    inputs_sha256: str,
    run_dir: str,
    device: str,
) -> RenderContext:
    job = _job(scene_path, overrides, scene_sha256, inputs_sha256, run_dir)
    return build_context(
        job.scene,
        job.plan,
        torch.device(device),
        load=_cached_perceptor,
        flow_dir=flows_dir(job.paths),
        load_vqgan=_cached_vqgan,
    )


def flows_dir(paths: RunPaths) -> Path:
    """Where a video-source run keeps the optical flows computed ahead of the frame chain."""
    return paths.root / "flows"


def job_for(run: RunRef) -> Job:
    """The resident :class:`Job` of a run (built on first use in this process)."""
    return _job(run.scene_path, run.overrides, run.scene_sha256, run.inputs_sha256, run.run_dir)


def context_for(run: RunRef) -> RenderContext:
    """The resident render context (perceptors + prompt embeddings) of a run."""
    return _context(
        run.scene_path, run.overrides, run.scene_sha256, run.inputs_sha256, run.run_dir, run.device
    )


@lru_cache(maxsize=2)
def _metrics(
    scene_path: str, overrides: tuple[str, ...], scene_sha256: str, inputs_sha256: str, run_dir: str
) -> MetricsWriter | None:
    job = _job(scene_path, overrides, scene_sha256, inputs_sha256, run_dir)
    return open_metrics(job.paths.root, job.scene)


def metrics_for(run: RunRef) -> MetricsWriter | None:
    """The run's TensorBoard writer, one per process and run (``None`` unless ``tensorboard: true``)."""
    return _metrics(run.scene_path, run.overrides, run.scene_sha256, run.inputs_sha256, run.run_dir)


@dataclass(frozen=True)
class HeldState:
    """The state after frame ``index`` (key ``key``), as its checkpoint with ``checkpoint_sha256`` holds it."""

    index: int
    key: str
    checkpoint_sha256: str
    state: RenderState


class StateSlot:
    """Hands the state a frame task ends with to the next frame's task in the same process, so the
    next frame does not read back (and hash) the checkpoint just written.

    It holds one state at most, and only while a render has it open (:func:`handing_over_states`):
    a frame task called on its own keeps nothing. :meth:`take` empties it: a frame that fails
    half-way has changed that state, so its retry reads the checkpoint from disk.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: HeldState | None = None
        self._open = False

    def put(self, held: HeldState) -> None:
        """Hold ``held`` (replacing what was held) while the slot is open."""
        with self._lock:
            self._held = held if self._open else None

    def take(self, index: int, key: str) -> HeldState | None:
        """The held state if it is the one after frame ``index`` with key ``key``; empties the slot."""
        with self._lock:
            held, self._held = self._held, None
        return held if held is not None and (held.index, held.key) == (index, key) else None

    def set_open(self, value: bool) -> None:
        """Open or close the slot; either way, drop what is held (its tensors are freed)."""
        with self._lock:
            self._held, self._open = None, value


@lru_cache(maxsize=4)
def _slot(run_dir: str, scene_sha256: str, inputs_sha256: str, device: str) -> StateSlot:
    return StateSlot()


def state_slot(run: RunRef) -> StateSlot:
    """The run's :class:`StateSlot` in this process."""
    return _slot(run.run_dir, run.scene_sha256, run.inputs_sha256, run.device)


@contextmanager
def handing_over_states(run: RunRef) -> Iterator[StateSlot]:
    """Let the run's frame tasks hand their states over in memory for the duration of the block;
    the last state is dropped at its end (a worker that renders many runs keeps none of them)."""
    slot = state_slot(run)
    slot.set_open(True)
    try:
        yield slot
    finally:
        slot.set_open(False)
