"""The documentation stands alone and says what the code does; the package metadata builds cleanly."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DOCS = sorted(
    [REPO / "README.md", *REPO.glob("docs/*.md"), *REPO.glob("deploy/*.md"), *REPO.glob("bench/*.md")]
)
SOURCES = sorted(
    p
    for folder in ("pytti_engine", "tasks", "flows", "bench", "scenes", "deploy")
    for p in (REPO / folder).rglob("*.py")
)
# Material that is not part of the repository (design notes, specs) must never be cited by it.
OUTSIDE = re.compile(
    r"\bspec/[\w.-]+|\.\./shared\b|/work/shared|prefect-notes|pytti-reference|building-blocks"
)


def test_nothing_cites_files_outside_the_repository() -> None:
    hits = [
        f"{path.relative_to(REPO)}:{n}: {line.strip()}"
        for path in DOCS + SOURCES
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
        if OUTSIDE.search(line)
    ]
    assert not hits, "\n".join(hits)


def test_relative_links_in_docs_resolve() -> None:
    broken = []
    for path in DOCS:
        targets = [t.split("#")[0] for t in re.findall(r"\]\(([^)\s]+)\)", path.read_text(encoding="utf-8"))]
        broken += [
            f"{path.relative_to(REPO)} -> {t}"
            for t in targets
            if t and "://" not in t and not (path.parent / t).exists()
        ]
    assert not broken, broken


def test_benchmarks_doc_describes_the_ratio_overhead_py_prints() -> None:
    script = (REPO / "bench" / "overhead.py").read_text(encoding="utf-8")
    section = (REPO / "docs" / "benchmarks.md").read_text(encoding="utf-8").split("## Prefect overhead")[1]
    section = section.split("\n## ")[0]
    assert "statistics.median(engine_times)" in script and 'print(f"ratio: {f / e:.3f}")' in script
    assert "median flow run ÷ median engine run" in section
    assert "best flow run" not in section


def test_the_license_metadata_raises_no_setuptools_deprecation_warning() -> None:
    from setuptools.config.pyprojecttoml import apply_configuration
    from setuptools.dist import Distribution

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dist = apply_configuration(Distribution(), REPO / "pyproject.toml")
    messages = [str(w.message) for w in caught if "license" in str(w.message).lower()]
    assert messages == []
    assert dist.metadata.license_expression == "MIT"


def test_runtime_dependencies_are_the_products_own_list() -> None:
    """Anything beyond the core runtime list (charts, depth, flow, audio, metrics, VQGAN) is an extra."""
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    names = {re.split(r"[<>=!~\[ ;]", d, maxsplit=1)[0].lower() for d in project["dependencies"]}
    core = {"prefect", "torch", "torchvision", "open_clip_torch", "kornia", "pillow", "numpy"}
    core |= {"ffmpeg-python", "imageio-ffmpeg", "pyyaml", "pydantic", "safetensors"}
    assert names == core
    extras = project["optional-dependencies"]
    assert extras["charts"] == ["matplotlib>=3.8"]
    assert "charts" in extras["dev"][0]  # make test installs every extra


def test_the_worker_image_installs_every_runtime_extra() -> None:
    """A worker renders any scene a user submits: depth, flow, audio, metrics, VQGAN and the plan chart."""
    import tomllib

    extras = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"][
        "optional-dependencies"
    ]
    dockerfile = (REPO / "deploy" / "Dockerfile").read_text(encoding="utf-8")
    installed = re.search(r"pip install --no-cache-dir -e '\.\[([\w,]+)\]'", dockerfile)
    assert installed is not None
    assert set(installed.group(1).split(",")) == set(extras) - {"dev"}
