"""The judged persona filter in the DAG: judge_trait scores every answer with the (offline) judge, extract_vectors
leaves out the pairs that fail, and the sidecar counts them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import REPO, tiny_config

from traitscope.core.io import parquet_attrs
from traitscope.core.persona_filter import filter_pairs
from traitscope.study import section

pytestmark = pytest.mark.e2e
TARGET = "results/vectors/base/safety/evil/vectors.json"


def run(workdir: Path, cfg: dict) -> subprocess.CompletedProcess:
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
            TARGET,
        ],
        capture_output=True,
        text=True,
        timeout=1200,
        env=os.environ.copy(),
    )


def test_judged_filter_drops_failing_pairs_from_extraction(tmp_path, tiny_model_dir):
    cfg = tiny_config(tiny_model_dir)
    cfg["extract"]["filter"] = {"min_trait_pos": 0, "max_trait_neg": 100, "min_coherence": 0}  # keeps every pair
    first = run(tmp_path, cfg)
    assert first.returncode == 0, first.stderr[-3000:]
    judged_path = tmp_path / "results/extract/base/safety/evil/judged.parquet"
    judged = pd.read_parquet(judged_path)
    assert len(judged) == 2 * 2 * 8 and judged["trait_score"].between(0, 100).all()  # pairs x polarity x questions
    assert judged["keep"].all()
    # now a threshold that the weakest quarter of positive answers fails
    threshold = float(np.percentile(judged.loc[judged["label"] == 1, "trait_score"], 25)) + 1e-6
    cfg["extract"]["filter"]["min_trait_pos"] = threshold
    second = run(tmp_path, cfg)
    assert second.returncode == 0, second.stderr[-3000:]
    judged = pd.read_parquet(judged_path)
    expected, counts = filter_pairs(
        judged.drop(columns="keep"), section("extract", {"filter": cfg["extract"]["filter"]}).filter
    )
    assert judged["keep"].tolist() == expected["keep"].tolist() and 0 < counts["dropped_pairs"] < counts["pairs"]
    assert parquet_attrs(judged_path)["filter"]["kept_pairs"] == counts["kept_pairs"]
    sidecar = json.loads((tmp_path / TARGET).read_text())
    assert sidecar["filter"]["kept_pairs"] == counts["kept_pairs"]
    assert sidecar["split"]["n_dropped_by_filter"] == int((~judged["keep"]).sum())
    assert sidecar["split"]["n_train"] + sidecar["split"]["n_test"] == int(judged["keep"].sum())
