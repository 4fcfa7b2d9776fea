"""Traits at the attention-output and MLP-output sites through the DAG: each trait is captured, extracted, projected,
checked against its random baseline and steered at its own site, while the prompt-set capture keeps the residual
stream beside the sites; editing one trait's site redoes that trait's capture, not the others'."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from conftest import REPO, tiny_config
from sklearn.metrics import roc_auc_score

from traitscope.core.artifacts import ActivationShard, BaselineScores, TraitVectors
from traitscope.workflow.layout import Layout

pytestmark = pytest.mark.e2e
L = Layout("results")
HARM, EVIL = "safety/harmful_instruction", "safety/evil"


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
            *args,
            "--configfile",
            str(workdir / "config.yaml"),
            "--cores",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=1200,
        env=os.environ.copy(),
    )


def test_traits_are_read_projected_and_steered_at_their_sites(tmp_path, tiny_model_dir):
    cfg = tiny_config(tiny_model_dir)
    cfg["traits"][HARM]["site"] = "attn"
    cfg["traits"][EVIL]["site"] = "mlp"
    del cfg["optimize"]
    targets = [
        "results/harm_separation/harm_separation.json",
        L.scores("base", "harmful_eval"),
        L.baseline("base", "harmful_eval"),
        f"results/steering/base/{EVIL}/sweep.parquet",
    ]
    proc = run(tmp_path, cfg, *targets)
    assert proc.returncode == 0, proc.stderr[-3000:]

    def vectors(trait: str) -> TraitVectors:
        files = L.vector_files("base", trait)
        return TraitVectors.load(tmp_path / files["vectors"], tmp_path / files["sidecar"])

    harm, evil = vectors(HARM), vectors(EVIL)
    assert (harm.site, evil.site) == ("attn", "mlp")
    # each trait's contrastive capture holds its own site only
    for trait, site in ((HARM, "attn"), (EVIL, "mlp")):
        shard = ActivationShard.load(tmp_path / L.trait_capture("base", trait)["activations"])
        assert shard.sites == [site] and all(f".{site}.layer_" in k for k in shard.tensors if "layer_" in k)
    # the prompt-set capture: the residual stream (SAE, organism, resid traits) and both sites
    shards = [ActivationShard.load(tmp_path / L.activations("base", "harmful_eval", i)) for i in (0, 1)]
    assert shards[0].sites == ["resid", "attn", "mlp"]
    layer, method = harm.best_layer, harm.best_method
    scores = pd.read_parquet(tmp_path / L.scores("base", "harmful_eval"))
    got = scores[
        (scores["trait"] == HARM)
        & (scores["layer"] == layer)
        & (scores["method"] == method)
        & (scores["position"] == "last")
    ]
    expect = torch.cat([s.stored("last", layer, "attn").float() @ harm.unit(method, layer) for s in shards]).numpy()
    np.testing.assert_array_equal(got["score"].to_numpy(), expect)
    resid = torch.cat([s.stored("last", layer).float() @ harm.unit(method, layer) for s in shards]).numpy()
    assert not np.allclose(expect, resid)
    baseline = BaselineScores.load(tmp_path / L.baseline("base", "harmful_eval"))
    assert f"last.attn.layer_{layer}" in baseline.tensors and f"last.layer_{layer}" not in baseline.tensors
    # the harm check scores the eval sets at the trait's site
    check = json.loads((tmp_path / "results/harm_separation/harm_separation.json").read_text())
    benign = ActivationShard.load(tmp_path / L.activations("base", "benign_eval", 0))
    h = np.concatenate([s.pooled("last", layer, "attn")[0] for s in shards]) @ harm.unit(method, layer).numpy()
    b = benign.pooled("last", layer, "attn")[0] @ harm.unit(method, layer).numpy()
    assert check["site"] == "attn"
    assert check["eval_auc"] == pytest.approx(roc_auc_score(np.r_[np.ones(len(h)), np.zeros(len(b))], np.r_[h, b]))
    # steering adds the evil vector to the MLP output, in units of the MLP output's mean norm
    table = pd.read_parquet(tmp_path / f"results/steering/base/{EVIL}/sweep.parquet")
    trait_acts = ActivationShard.load(tmp_path / L.trait_capture("base", EVIL)["activations"])
    x, ok = trait_acts.pooled(evil.position, evil.best_layer, "mlp")
    assert set(table["site"]) == {"mlp"}
    assert table["norm"].iloc[0] == pytest.approx(float(np.linalg.norm(x[ok], axis=1).mean()))

    # editing one trait's site redoes that trait's capture (and the prompt sets' sites), not the other trait's
    cfg["traits"][EVIL]["site"] = "resid"
    dry = run(tmp_path, cfg, "-n", *targets)
    assert dry.returncode == 0, dry.stderr[-3000:]
    out = dry.stdout + dry.stderr
    planned = set(re.findall(r"^\s*(?:local)?rule (\w+):", out, re.M))
    assert {"capture_trait", "extract_vectors", "capture"} <= planned
    assert L.trait_capture("base", EVIL)["activations"] in out
    assert L.trait_capture("base", HARM)["activations"] not in out
