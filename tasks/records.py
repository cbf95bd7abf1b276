"""Small records passed between tasks (paths and hashes, never tensors)."""

from pydantic import BaseModel, ConfigDict, Field


class RunRef(BaseModel):
    """One render's run directory and how to rebuild its scene in any process."""

    model_config = ConfigDict(frozen=True)

    run_dir: str
    scene_path: str
    overrides: tuple[str, ...] = ()
    device: str
    frame_count: int
    video_stem: str
    scene_sha256: str
    inputs_sha256: str = ""  # the input files' contents (pytti_engine.inputs.inputs_digest)


class FrameRecord(BaseModel):
    """A finished frame."""

    model_config = ConfigDict(frozen=True)

    index: int
    png: str
    png_sha256: str
    key: str
    loss: float | None = None
    seconds: float = 0.0
    skipped: bool = False


class RenderSummary(BaseModel):
    """What a render flow returns."""

    run_dir: str
    video: str
    frames: int
    rendered: int
    skipped: int
    seconds: float = Field(description="wall time of the flow body")
