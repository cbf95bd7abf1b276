"""The scene package is pure Python: importing it (and the scene CLI) loads no torch, prefect or matplotlib."""

from __future__ import annotations

import subprocess
import sys

import pytest

CHECK = """
import sys
import {module}
heavy = sorted(m for m in ("torch", "prefect", "matplotlib", "open_clip", "kornia") if m in sys.modules)
print(",".join(heavy))
"""


@pytest.mark.parametrize("module", ["pytti_engine.scene"])
def test_importing_loads_no_heavy_packages(module: str) -> None:
    result = subprocess.run(
        [sys.executable, "-c", CHECK.format(module=module)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert result.stdout.strip() == ""
