"""Stream-through projection (capture.stream): scores made inside the capture job equal the two-step scores, no
activations are written for the streamed sets, and the activation budget printed at start-up matches the files."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from conftest import REPO, tiny_config

from traitscope.core.artifacts import BaselineScores
from traitscope.study import load_config
from traitscope.workflow.budget import SCORE_ROW_BYTES, pair_budget

pytestmark = pytest.mark.e2e
SETS = ("benign_eval", "harmful_eval")
TARGETS = [f"results/projections/base/{s}/{k}.parquet" for s in SETS for k in ("scores", "tokens")]


def smk(workdir: Path, cfg: dict, *args: str) -> subprocess.CompletedProcess:
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "-s",
        str(REPO / "Snakefile"),
        "-d",
        str(workdir),
        "--configfile",
        str(path),
        "--cores",
        "2",
        *args,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=1200, env=os.environ.copy())


def activation_files(results: Path) -> list[Path]:
    return sorted(
        f
        for f in (results / "activations/base").glob("*/shard-*.safetensors")
        if not f.name.endswith(".baseline.safetensors")
    )


def test_stream_scores_equal_two_step_scores_and_keep_no_activations(tmp_path, tiny_model_dir, capsys):
    cfg = tiny_config(tiny_model_dir)
    cfg["checks"] = {"harm_separation": None}  # the harm check reads these sets' activations: they would not stream
    cfg["project"]["layers"] = [1, 3]  # two layers of every trait (not only its best): more than one hooked layer
    cfg["capture"]["positions"] = ["last", "mean", "response"]
    two_step = smk(tmp_path, cfg, *TARGETS)
    assert two_step.returncode == 0, two_step.stderr[-3000:]
    r = tmp_path / "results"
    before = {t: pd.read_parquet(tmp_path / t) for t in TARGETS}
    acts = activation_files(r)
    assert len(acts) == 3  # harmful_eval has two shards
    baselines = {f: BaselineScores.load(f) for f in r.glob("projections/base/*/baseline.safetensors")}
    assert len(baselines) == 2
    act_bytes = sum(f.stat().st_size for f in acts)
    for f in acts:
        f.unlink()

    cfg["capture"]["stream"] = True
    dry = smk(tmp_path, cfg, "-n", *TARGETS)
    assert dry.returncode == 0, dry.stderr[-3000:]
    assert "base/benign_eval: 20 prompts x" in dry.stderr and "(stream: scores only)" in dry.stderr
    stream = smk(tmp_path, cfg, *TARGETS)
    assert stream.returncode == 0, stream.stderr[-3000:]
    ran = sorted(set(re.findall(r"^\s*(?:local)?rule (\w+):", stream.stdout + stream.stderr, re.M)))
    assert ran == ["capture_stream", "project"]  # extraction is reused; no two-step capture
    assert not activation_files(r)  # no activations written
    for f, before_base in baselines.items():  # the random baseline, gathered from the shards, is the same too
        after_base = BaselineScores.load(f)
        assert after_base.ids == before_base.ids and after_base.tensors.keys() == before_base.tensors.keys()
        for key, value in before_base.tensors.items():
            torch.testing.assert_close(after_base.tensors[key], value, rtol=0, atol=0, equal_nan=True, msg=key)
    for t in TARGETS:
        after = pd.read_parquet(tmp_path / t)
        assert len(after) > 0
        pd.testing.assert_frame_equal(after, before[t], check_exact=True)  # the very same float32 scores
    assert set(before[TARGETS[0]]["layer"]) == {1, 3} and set(before[TARGETS[0]]["position"]) == {
        "last",
        "mean",
        "response_mean",
    }

    # bytes written per prompt both ways, against the start-up budget's estimate
    study = load_config(cfg, base_dir=str(tmp_path))
    n = sum(study.rows[s] for s in SETS)
    stream_files = [
        f for f in (r / "activations/base").glob("*/shard-*.parquet") if not f.name.endswith(".responses.parquet")
    ]
    score_bytes_base = sum(f.stat().st_size for f in (r / "activations/base").glob("*/shard-*.baseline.safetensors"))
    assert len(stream_files) == 6
    score_bytes = sum(f.stat().st_size for f in stream_files)
    rows = sum(len(pd.read_parquet(f)) for f in stream_files)
    est = pair_budget(study, "base", "benign_eval")
    with capsys.disabled():
        print(
            f"\nbytes per prompt (tiny model, hidden 32, 4 layers): two-step activations {act_bytes / n:.0f} "
            f"(estimate {est.activation_bytes_per_prompt:.0f}), stream scores {score_bytes / n:.0f} (estimate "
            f"{est.score_bytes_per_prompt:.0f} with the random baseline); {score_bytes / rows:.1f} bytes per score "
            f"row; random baseline {score_bytes_base / n:.0f}"
        )
    # activations: generated responses stop early at most (the estimate is an upper bound) plus file headers
    assert 0.5 * est.activation_bytes_per_prompt < act_bytes / n < 1.5 * est.activation_bytes_per_prompt
    # score tables this small are mostly parquet footer (a few KB per file); the per-row cost at scale is checked in
    # tests/test_budget.py
    assert score_bytes < rows * SCORE_ROW_BYTES + 8000 * len(stream_files)
    # the random baseline: 100 float32 directions x 2 projected layers x 3 pooled positions, plus file headers
    assert 100 * 2 * 3 * 4 <= score_bytes_base / n < 1.2 * 100 * 2 * 3 * 4
