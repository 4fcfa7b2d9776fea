"""The slurm profile on a real single-node SLURM cluster (.ci/slurm_up.sh starts one in CI).

Skipped where no cluster answers, unless TRAITSCOPE_REQUIRE_SLURM=1 (as in CI), where that fails.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import REPO, tiny_config

TARGET = "results/projections/base/benign_eval/shard-0.parquet"


def cluster_up() -> bool:
    if not shutil.which("sinfo"):
        return False
    out = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True)
    return out.returncode == 0 and any(s in out.stdout for s in ("idle", "mixed", "allocated"))


def plugin_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("snakemake_executor_plugin_slurm") is not None


pytestmark = pytest.mark.e2e
if os.environ.get("TRAITSCOPE_REQUIRE_SLURM") != "1":
    pytestmark = [pytest.mark.e2e, pytest.mark.skipif(not (cluster_up() and plugin_installed()),
                                                      reason="no SLURM cluster or executor plugin")]


def run(workdir: Path, cfg: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(workdir),
                           "--configfile", str(cfg), *extra, TARGET], capture_output=True, text=True, timeout=1500)


def test_slurm_profile_submits_with_resources_and_matches_local(tmp_path, tiny_model_dir):
    assert cluster_up() and plugin_installed(), "SLURM cluster or snakemake-executor-plugin-slurm missing"
    config = tiny_config(tiny_model_dir)
    config["resources"] = {"min_mem_mb": 1500, "runtime": 20, "threads": 1,
                           "variants": {"base": {"gpu": 1}}}  # the CI node has one (fake) GPU
    local, slurm = tmp_path / "local", tmp_path / "slurm"
    for d in (local, slurm):
        d.mkdir()
        (d / "config.yaml").write_text(yaml.safe_dump(config))

    ran_local = run(local, local / "config.yaml", "--cores", "2")
    assert ran_local.returncode == 0, ran_local.stderr[-3000:]
    ran = run(slurm, slurm / "config.yaml", "--profile", str(REPO / "profiles" / "slurm"), "--jobs", "4",
              "--slurm-status-command", "squeue", "--slurm-no-account", "--slurm-init-seconds-before-status-checks", "2",
              "--seconds-between-status-checks", "2", "--latency-wait", "5")
    log = ran.stdout + ran.stderr
    assert ran.returncode == 0, log[-4000:]

    submitted = re.findall(r"Job \d+ has been submitted with SLURM jobid (\d+) \(log: (\S+)\)", log)
    assert len(submitted) >= 8, log[-3000:]
    seen = {}
    for jobid, logpath in submitted:
        rule = re.search(r"rule_(\w+)", logpath).group(1)
        info = subprocess.run(["scontrol", "show", "job", jobid], capture_output=True, text=True).stdout
        seen.setdefault(rule, []).append(info)
    for rule in ("capture", "capture_trait"):
        for info in seen[rule]:
            assert "Partition=gpu" in info and "TresPerJob=gres:gpu:1" in info, info
            assert re.search(r"MinMemoryNode=1500M", info), info
            assert "JobState=COMPLETED" in info, info
    for rule in ("prep_prompts", "extract_vectors", "project"):
        for info in seen[rule]:
            assert "Partition=cpu" in info and "gres:gpu" not in info, info
    assert any("MinMemoryNode=16000M" in info for info in seen["extract_vectors"])  # set-resources in the profile

    a = pd.read_parquet(local / TARGET).sort_values(["id", "trait", "method", "position"]).reset_index(drop=True)
    b = pd.read_parquet(slurm / TARGET).sort_values(["id", "trait", "method", "position"]).reset_index(drop=True)
    assert len(a) > 0
    pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-4, atol=1e-3)
