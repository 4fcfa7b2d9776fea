"""A new experiment is one folder and one registry line: the toy experiment's folder ``tests/toy_experiment/`` is
copied into a copy of the project as ``traitscope/experiments/toy/``, registered with one line, and run in the tiny
DAG to ``results/all``; no other file of the project changes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import REPO, tiny_config

TOY = Path(__file__).parent / "toy_experiment"
FOLDER = "traitscope/experiments/toy"
REGISTRY_FILE = "traitscope/experiments/__init__.py"
LAST_ENTRY = '    "traitscope.experiments.optimize",\n'


def project_copy(dest: Path) -> Path:
    """The project's tracked files (as they are in the working tree) under ``dest``."""
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout.split(b"\0")
    for name in filter(None, (f.decode() for f in files)):
        src = REPO / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    return dest


def changed_files(a: Path, b: Path) -> tuple[list[str], list[str]]:
    """Files of ``b`` that differ from ``a`` (both trees), and files only ``b`` has."""

    def tree(root: Path) -> dict[str, bytes]:
        return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}

    ta, tb = tree(a), tree(b)
    return sorted(k for k in tb if k in ta and ta[k] != tb[k]), sorted(k for k in tb if k not in ta)


@pytest.mark.e2e
def test_an_experiment_added_through_the_registry_alone_runs_in_the_dag(tmp_path: Path, tiny_model_dir: Path) -> None:
    before = project_copy(tmp_path / "before")
    after = project_copy(tmp_path / "after")
    shutil.copytree(TOY, after / FOLDER, ignore=shutil.ignore_patterns("__pycache__"))  # one folder
    registry = after / REGISTRY_FILE
    text = registry.read_text()
    assert LAST_ENTRY in text
    registry.write_text(text.replace(LAST_ENTRY, LAST_ENTRY + '    "traitscope.experiments.toy",\n'))

    changed, added = changed_files(before, after)
    toy_files = sorted(str(p.relative_to(TOY)) for p in TOY.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    assert changed == [REGISTRY_FILE] and sorted(added) == [f"{FOLDER}/{f}" for f in toy_files]
    diff = [
        line
        for line in registry.read_text().splitlines()
        if line not in (before / REGISTRY_FILE).read_text().splitlines()
    ]
    assert diff == ['    "traitscope.experiments.toy",']

    cfg = tiny_config(tiny_model_dir)
    for section in ("steering", "optimize", "checks"):
        cfg.pop(section)
    cfg["traits"].pop("safety/evil")  # one contrast trait: the smallest DAG that extracts, captures and projects
    cfg["toy"] = yaml.safe_load((TOY / "example.yaml").read_text())["section"]  # its own example
    work = tmp_path / "study"
    work.mkdir()
    (work / "config.yaml").write_text(yaml.safe_dump(cfg))

    def snakemake(*args: str) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-m", "snakemake", "-s", str(after / "Snakefile"), "-d", str(work)]
        cmd += ["--configfile", str(work / "config.yaml"), *args, "results/all"]
        # from the study folder: `python -m` puts the working directory first on the module path
        return subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env, cwd=work)

    env = {**os.environ, "PYTHONPATH": str(after)}
    proc = snakemake("--cores", "2")
    assert proc.returncode == 0, proc.stderr[-4000:]

    result = json.loads((work / "results/toy/summary.json").read_text())
    manifest = json.loads((work / "results/all").read_text())
    assert "results/toy/summary.json" in json.dumps(manifest)  # results/all requires it
    # the reported mean, recomputed from the saved score table at the trait's chosen layer
    trait = "safety/harmful_instruction"
    layer = json.loads((work / f"results/vectors/base/{trait}/vectors.json").read_text())["best"]["layer"]
    scores = pd.read_parquet(work / "results/projections/base/benign_eval/scores.parquet")
    rows = scores[
        (scores.trait == trait) & (scores.layer == layer) & (scores.method == "mean_diff") & (scores.position == "last")
    ]
    assert result["traits"][trait]["mean"] == pytest.approx(float(np.mean(rows["score"])), abs=1e-6)
    assert result["traits"][trait]["n"] == len(rows) > 0
    findings = (work / "results/findings.md").read_text()
    assert "- **Toy**: " in findings  # its finding, through the registry

    # without the registry line the section is an unknown config key: one line naming it
    registry.write_text(text)
    proc = snakemake("-n")
    assert proc.returncode != 0 and "unknown key(s) ['toy']" in proc.stderr
