"""http(s) inputs: fetched once into the run directory, then read like local files.

A scene may name these inputs by an ``http://`` or ``https://`` URL: ``init_image``,
``direct_image_prompts[].image``, ``video_path``, and in prompts a semantic image prompt
``[https://host/ref.png]:2`` or an image or video mask ``text:1_[https://host/mask.png]``.

:func:`fetch_inputs` downloads each URL once into ``<run>/inputs/<sha256(url)[:16]>-<file name>``
(atomically: a killed download never leaves a file that looks complete). A later render or resume
into the same run directory finds the file there and does not go to the network again, so a run
resumes offline and its frames stay valid; to pick up a new version of a remote file, delete its copy
(or ``<run>/inputs/``) and render again: the copy's content hash changes the frame keys from the
first frame that reads it, as for an edited local file (:mod:`pytti_engine.inputs`).

The frame keys name a URL input by its URL and hash its fetched copy, so moving the run directory
keeps them. :func:`localize_scene` gives the scene the renderer loads: every URL replaced by its copy.
"""

from __future__ import annotations

import hashlib
import http.client
import re
import shutil
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pytti_engine.atomic import atomic_write
from pytti_engine.errors import PyttiError
from pytti_engine.inputs import Localize, is_url

INPUTS_DIR = "inputs"
FETCH_TIMEOUT_S = 30.0
"""Seconds a connection or a read may stall before the fetch fails."""
PROBE_TIMEOUT_S = 10.0
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class UrlInput:
    """An input the scene names by URL.

    Args:
        field: where the scene names it (``init_image``, ``scenes[1] image mask``, ...).
        url: the URL as written.
    """

    field: str
    url: str


def scene_urls(scene: Any) -> list[UrlInput]:
    """Every URL input of a validated scene, in the order of the scene file (a URL used twice, once)."""
    found: list[UrlInput] = []

    def add(field: str, value: Any) -> None:
        if value is not None and is_url(value) and all(u.url != value for u in found):
            found.append(UrlInput(field, str(value)))

    add("init_image", scene.init_image)
    for i, prompt in enumerate(scene.direct_image_prompts):
        add(f"direct_image_prompts[{i}].image", prompt.image)
    add("video_path", scene.video_path)
    for k, stage in enumerate(scene.scenes):
        for spec in stage.prompts:
            add(f"scenes[{k}] image prompt", spec.image)
            mask = getattr(spec.mask, "path", None)
            if mask is not None:
                add(f"scenes[{k}] {type(spec.mask).__name__.removesuffix('Mask').lower()} mask", mask)
    return found


def fetched_path(run_dir: Path, url: str) -> Path:
    """Where ``url``'s copy lives in ``run_dir``: ``inputs/<16 hex of sha256(url)>-<its file name>``."""
    name = Path(urllib.parse.urlsplit(url).path).name
    safe = _SAFE_NAME.sub("_", name).strip("._")[-80:] or "input"
    return Path(run_dir) / INPUTS_DIR / f"{hashlib.sha256(url.encode()).hexdigest()[:16]}-{safe}"


def _fetch_error(item: UrlInput, reason: object) -> PyttiError:
    return PyttiError(f"{item.field}: cannot fetch {item.url}: {reason}")


def _reason(error: BaseException) -> str:
    if isinstance(error, urllib.error.HTTPError):
        return f"HTTP {error.code} {error.reason}"
    if isinstance(error, urllib.error.URLError):
        return str(error.reason)
    return str(error) or type(error).__name__


def download(item: UrlInput, target: Path, timeout: float = FETCH_TIMEOUT_S) -> None:
    """Download ``item.url`` into ``target`` atomically.

    Raises:
        PyttiError: the server cannot be reached, answers with an error, or the transfer breaks (one
            line naming the field and the URL); nothing is left at ``target`` then.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    request = urllib.request.Request(item.url, headers={"User-Agent": "pytti-flow"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            atomic_write(target, lambda out: shutil.copyfileobj(response, out, 1 << 20))
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as e:
        raise _fetch_error(item, _reason(e)) from None


def fetch_inputs(scene: Any, run_dir: Path) -> dict[str, Path]:
    """Fetch every URL input of ``scene`` into ``run_dir`` (those already there are kept as they are).

    Call it while holding the run lock.

    Returns:
        ``{url: local copy}`` for every URL input (empty for a scene without any).

    Raises:
        PyttiError: a URL cannot be fetched (naming the field and the URL).
    """
    local = {}
    for item in scene_urls(scene):
        path = fetched_path(run_dir, item.url)
        if not path.is_file():
            download(item, path)
        local[item.url] = path
    return local


def fetched_inputs(scene: Any, run_dir: Path) -> dict[str, Path]:
    """``{url: local copy}`` of inputs :func:`fetch_inputs` fetched into ``run_dir`` (no network).

    Raises:
        PyttiError: a URL input has no copy there (it was never fetched, or the copy was deleted).
    """
    local = {}
    for item in scene_urls(scene):
        path = fetched_path(run_dir, item.url)
        if not path.is_file():
            raise PyttiError(f"{item.field}: {item.url} has not been fetched into {path.parent}")
        local[item.url] = path
    return local


def check_reachable(scene: Any, run_dir: Path | None = None, timeout: float = PROBE_TIMEOUT_S) -> None:
    """Before Prefect starts: every URL input not yet fetched into ``run_dir`` answers (a GET whose
    body is not read). Nothing is written.

    Raises:
        PyttiError: the first URL that cannot be fetched, in one line naming the field and the URL.
    """
    for item in scene_urls(scene):
        if run_dir is not None and fetched_path(run_dir, item.url).is_file():
            continue
        request = urllib.request.Request(item.url, headers={"User-Agent": "pytti-flow"})
        try:
            with urllib.request.urlopen(request, timeout=timeout):
                pass
        except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as e:
            raise _fetch_error(item, _reason(e)) from None


def url_files(local: Mapping[str, Path]) -> Localize:
    """A :data:`~pytti_engine.inputs.Localize` for :func:`~pytti_engine.inputs.input_uses`: a URL's
    fetched copy (``local``), a path as it is.

    Raises (when called):
        PyttiError: a URL that is not in ``local``.
    """

    def localize(source: str, field: str) -> Path:
        if not is_url(source):
            return Path(source)
        if source not in local:
            raise PyttiError(f"{field}: {source} has not been fetched")
        return local[source]

    return localize


def localize_scene(scene: Any, local: Mapping[str, Path]) -> Any:
    """The scene with every URL input replaced by its local copy (``local``: :func:`fetch_inputs`).

    The copy's fields are not validated again (the scene was).
    """
    if not local:
        return scene

    def swap(value: Any) -> Any:
        return local[value] if isinstance(value, str) and value in local else value

    def swap_text(value: str | None) -> str | None:
        return None if value is None else str(swap(value)) if value in local else value

    stages = []
    for stage in scene.scenes:
        specs = []
        for spec in stage.prompts:
            mask = spec.mask
            if getattr(mask, "path", None) in local:
                mask = replace(mask, path=str(local[mask.path]))
            specs.append(replace(spec, image=swap_text(spec.image), mask=mask))
        stages.append(stage.model_copy(update={"prompts": tuple(specs)}))
    directs = tuple(p.model_copy(update={"image": swap(p.image)}) for p in scene.direct_image_prompts)
    return scene.model_copy(
        update={
            "init_image": swap(scene.init_image),
            "video_path": swap(scene.video_path),
            "direct_image_prompts": directs,
            "scenes": tuple(stages),
        }
    )
