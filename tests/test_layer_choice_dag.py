"""Layer choice by steering effect in the DAG: extraction writes the AUC choice aside, steer_layer_choice judges
steered answers at the candidate layers, and choose_layer writes the sidecar every later stage reads."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import REPO, tiny_config

from traitscope.core.layer_choice import candidate_layers, choose_by_steering
from traitscope.study import section
from traitscope.workflow.layout import Layout

pytestmark = pytest.mark.e2e
TRAIT = "results/vectors/base/safety/evil"


def run(workdir: Path, cfg: dict, *args: str) -> subprocess.CompletedProcess:
    (workdir / "config.yaml").write_text(yaml.safe_dump(cfg))
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "-s",
            str(REPO / "Snakefile"),
            "-d",
            str(workdir),
            "--configfile",
            str(workdir / "config.yaml"),
            "--cores",
            "2",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=1200,
        env=os.environ.copy(),
    )


def test_steering_layer_choice_rewrites_the_sidecar_from_the_judged_sweep(tmp_path, tiny_model_dir):
    cfg = tiny_config(tiny_model_dir)
    choice = {"candidates": 2, "coefficients": [2.0], "coherence_floor": 0, "n_prompts": 3, "max_new_tokens": 4}
    cfg["extract"]["steering_layer_choice"] = choice
    target = f"{TRAIT}/vectors.json"
    proc = run(tmp_path, cfg, target)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ran = set(re.findall(r"^\s*(?:local)?rule (\w+):", proc.stdout + proc.stderr, re.M))
    assert {"extract_vectors", "steer_layer_choice", "choose_layer"} <= ran
    auc_info = json.loads((tmp_path / TRAIT / "vectors.auc.json").read_text())
    info = json.loads((tmp_path / target).read_text())
    table = pd.read_parquet(tmp_path / TRAIT / "layer_choice.parquet")
    assert (tmp_path / TRAIT / "layer_choice.png").stat().st_size > 5000
    # the sweep: 3 training-split questions unsteered, and at both candidate layers steered
    assert sorted(set(table["layer"])) == sorted([-1, *candidate_layers(auc_info, 2)])
    assert (table.groupby("layer").size() == 3).all() and table["trait_score"].between(0, 100).all()
    rows = pd.read_parquet(tmp_path / Layout("results").trait_prompts("safety/evil"))
    test_questions = set(rows.loc[rows["group"].isin(auc_info["split"]["test_groups"]), "prompt"])
    assert test_questions and test_questions.isdisjoint(set(table["prompt"]))  # training-split questions only
    # the sidecar is the AUC one with best re-chosen from the table
    expect = choose_by_steering(
        auc_info,
        table,
        section("extract", {"steering_layer_choice": choice}).steering_layer_choice,
        cfg.get("judge", {}).get("model", "traitscope/offline-judge"),
    )
    assert info == json.loads(json.dumps(expect))
    assert info["best"]["auc_choice"] == auc_info["best"] and "steering" in info["best"]["criterion"]
    assert {k: v for k, v in info.items() if k != "best"} == {k: v for k, v in auc_info.items() if k != "best"}
    effects = pd.DataFrame(info["best"]["steering"]["effects"])
    top = effects.sort_values(["trait_delta", "layer"], ascending=[False, True]).iloc[0]
    assert info["best"]["layer"] == int(top["layer"])  # coherence floor 0 keeps every setting
    # the AUC choice under steering_layer_choice: null plans extraction again, not a model job
    del cfg["extract"]["steering_layer_choice"]
    dry = run(tmp_path, cfg, "-n", target)
    assert dry.returncode == 0, dry.stderr[-3000:]
    planned = set(re.findall(r"^\s*(?:local)?rule (\w+):", dry.stdout + dry.stderr, re.M))
    assert planned == {"extract_vectors"}
