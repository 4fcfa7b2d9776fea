"""The workflow scripts run only inside Snakemake jobs, where a broken import shows up late (after the model jobs):
every name a script imports from traitscope must exist."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest
from conftest import REPO

SCRIPTS = sorted(
    [*(REPO / "workflow" / "scripts").glob("*.py"), *(REPO / "traitscope" / "experiments").glob("*/scripts/*.py")]
)


def imported_names(path: Path) -> list[tuple[str, str]]:
    """(module, name) of every ``from traitscope... import name`` in a file."""
    tree = ast.parse(path.read_text())
    return [
        (node.module, a.name)
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
        and node.level == 0
        and node.module
        and node.module.split(".")[0] == "traitscope"
        for a in node.names
    ]


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_every_name_a_script_imports_exists(script: Path) -> None:
    missing = []
    for module, name in imported_names(script):
        mod = importlib.import_module(module)
        if not hasattr(mod, name):
            try:
                importlib.import_module(f"{module}.{name}")
            except ModuleNotFoundError:
                missing.append(f"{module}.{name}")
    assert missing == [], f"{script.name} imports names that do not exist: {missing}"
