"""The layers import downwards only: data/, crafter/, models/ and the settings (config.py) run without
Dagster, the training code, the assets or the pipelines, so they can be used (and tested) on their own."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import goalcraft

PACKAGE = Path(goalcraft.__file__).parent
LOWER = ("goalcraft.data", "goalcraft.crafter", "goalcraft.models", "goalcraft.formats", "goalcraft.storage",
         "goalcraft.config")
FORBIDDEN = ("dagster", "goalcraft.training", "goalcraft.assets", "goalcraft.pipelines", "goalcraft.resources")


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules(prefix: str) -> list[Path]:
    sub = PACKAGE.joinpath(*prefix.split(".")[1:])
    return sorted(sub.rglob("*.py")) if sub.is_dir() else [sub.with_suffix(".py")]


def _imports(path: Path) -> dict[str, bool]:
    """Every module ``path`` imports, anywhere in the file (also inside functions) -> whether the
    import is only for type checkers (under ``if TYPE_CHECKING:``)."""
    found: dict[str, bool] = {}

    def visit(node: ast.AST, typing_only: bool) -> None:
        for child in ast.iter_child_nodes(node):
            guarded = typing_only or (isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test))
            if isinstance(child, ast.Import):
                for alias in child.names:
                    found[alias.name] = found.get(alias.name, True) and guarded
            elif isinstance(child, ast.ImportFrom) and child.module and not child.level:
                found[child.module] = found.get(child.module, True) and guarded
            visit(child, guarded)

    visit(ast.parse(path.read_text(encoding="utf-8")), False)
    return found


def _is_under(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def test_lower_layers_import_nothing_from_the_layers_above():
    offenders = [f"{_module_name(path)} imports {name}"
                 for prefix in LOWER for path in _modules(prefix)
                 for name, typing_only in _imports(path).items()
                 if _is_under(name, FORBIDDEN) and not typing_only]
    assert offenders == []


def _loaded_after_importing(names: list[str]) -> list[str]:
    """Every module in ``sys.modules`` after importing ``names`` in a fresh interpreter."""
    code = ("import importlib, json, sys\n"
            f"for name in {names!r}:\n"
            "    importlib.import_module(name)\n"
            "print(json.dumps(sorted(sys.modules)))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


@pytest.mark.slow
def test_importing_every_lower_module_loads_no_dagster_training_or_assets():
    loaded = _loaded_after_importing([_module_name(path) for prefix in LOWER for path in _modules(prefix)])
    assert "goalcraft.models.predictor" in loaded and "goalcraft.data.clip_stage" in loaded  # the import ran
    assert [m for m in loaded if _is_under(m, FORBIDDEN)] == []


def test_models_have_no_import_cycle():
    graph = {_module_name(path): {name for name in _imports(path) if name.startswith("goalcraft.models.")}
             for path in _modules("goalcraft.models")}

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        for nxt in graph.get(start, ()):
            if nxt == goal or (nxt not in seen and (seen.add(nxt) or reaches(nxt, goal, seen))):
                return True
        return False

    assert [m for m in graph if reaches(m, m, set())] == []


@pytest.mark.slow
def test_the_trainers_and_the_stage_functions_run_without_dagster_or_the_assets():
    loaded = _loaded_after_importing([_module_name(path) for prefix in ("goalcraft.training", "goalcraft.stages")
                                      for path in _modules(prefix)])
    assert "goalcraft.training.run_folder" in loaded and "goalcraft.stages.evaluation" in loaded
    assert [m for m in loaded if _is_under(m, ("dagster", "goalcraft.assets", "goalcraft.pipelines",
                                               "goalcraft.resources"))] == []
