"""The import rules of design.md §2, enforced by reading the source."""

import ast
from pathlib import Path

import pytest

ENGINE = Path(__file__).resolve().parents[2] / "pytti_engine"
FORBIDDEN_IN_ENGINE = {"prefect", "IPython", "matplotlib", "hydra", "tqdm"}
PURE_MODULES = ["warps", "losses.py", "cutouts.py"]


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _engine_files() -> list[Path]:
    return sorted(ENGINE.rglob("*.py"))


@pytest.mark.parametrize("path", _engine_files(), ids=lambda p: str(p.relative_to(ENGINE)))
def test_engine_never_imports_orchestration_or_notebook_libraries(path: Path) -> None:
    bad = {name for name in _imports(path) if name.split(".")[0] in FORBIDDEN_IN_ENGINE}
    assert not bad, f"{path} imports {bad}"


def test_engine_never_imports_tasks_or_flows() -> None:
    for path in _engine_files():
        bad = {n for n in _imports(path) if n.split(".")[0] in {"tasks", "flows"}}
        assert not bad, f"{path} imports {bad}"


def test_pure_tensor_modules_do_not_import_render_or_scene() -> None:
    for entry in PURE_MODULES:
        target = ENGINE / entry
        files = sorted(target.rglob("*.py")) if target.is_dir() else [target]
        for path in files:
            bad = {n for n in _imports(path) if n.startswith(("pytti_engine.render", "pytti_engine.scene"))}
            assert not bad, f"{path} imports {bad}"


def test_no_eval_or_exec_in_engine() -> None:
    for path in _engine_files():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                assert node.func.id not in {"eval", "exec"}, f"{path}:{node.lineno} calls {node.func.id}"
