"""Task: the media work before the first frame: check ffmpeg and TensorBoard, analyse the audio."""

import time

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, ConfigDict

from pytti_engine.audio import audio_spec, load_or_analyze
from pytti_engine.metrics import check_available
from pytti_engine.scene import load_scene
from pytti_engine.video import VideoOutputs, check_encoders


class MediaRecord(BaseModel):
    """What :func:`prepare_media_task` found (small: the band values stay in the analysis cache)."""

    model_config = ConfigDict(frozen=True)

    audio_key: str | None = None
    bands_path: str | None = None
    bands: tuple[str, ...] = ()
    frames: int = 0
    reused: bool = False


@task(name="prepare-media", retries=1, retry_delay_seconds=2, cache_policy=NO_CACHE, persist_result=False)
def prepare_media_task(scene_path: str, overrides: tuple[str, ...] = ()) -> MediaRecord:
    """Fail early when ffmpeg lacks an encoder the outputs need; analyse ``input_audio`` once per scene.

    The analysis is cached on disk under a key of the audio file's bytes and the analysis parameters
    (:func:`pytti_engine.audio.load_or_analyze`); the plan reads it from there, so it runs once.
    """
    logger = get_run_logger()
    scene = load_scene(scene_path, overrides)
    check_encoders(VideoOutputs.from_scene(scene))
    if scene.tensorboard:
        check_available()
    spec = audio_spec(scene)
    if spec is None or not spec.filters:
        return MediaRecord()
    start = time.perf_counter()
    cached = load_or_analyze(spec, float(scene.fps))
    logger.info(
        "audio bands %s of %s: %d frames, %s in %.2f s",
        ", ".join(cached.bands.names),
        spec.path.name,
        cached.bands.frames,
        "read from the cache" if cached.reused else "analysed",
        time.perf_counter() - start,
    )
    return MediaRecord(
        audio_key=cached.key,
        bands_path=str(cached.path),
        bands=cached.bands.names,
        frames=cached.bands.frames,
        reused=cached.reused,
    )
