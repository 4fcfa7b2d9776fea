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

TARGET = "results/projections/base/benign_eval/scores.parquet"


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
    pytestmark = [
        pytest.mark.e2e,
        pytest.mark.skipif(not (cluster_up() and plugin_installed()), reason="no SLURM cluster or executor plugin"),
    ]


def run(workdir: Path, cfg: Path, *extra: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
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
            str(cfg),
            *extra,
            TARGET,
        ],
        capture_output=True,
        text=True,
        timeout=1500,
        env={**os.environ, **(env or {})},
    )


def field(info: str, name: str) -> str:
    m = re.search(rf"\b{re.escape(name)}=(\S*)", info)
    assert m, f"{name} not in {info}"
    return m.group(1)


def test_slurm_profile_submits_the_right_requests_and_matches_local(tmp_path, tiny_model_dir):
    assert cluster_up() and plugin_installed(), "SLURM cluster or snakemake-executor-plugin-slurm missing"
    config = tiny_config(tiny_model_dir)
    # the CI node (.ci/slurm_up.sh) has one fake GPU of type ci_gpu, the feature ci_feat and 2 CPUs. The first try
    # of a model job asks for 500 MB, too little for Python, torch and the model: SLURM kills it (OverMemoryKill), and
    # the retry (the profile's retries: 1) must ask for 500 x 8 = 4000 MB.
    config["resources"] = {
        "min_mem_mb": 500,
        "mem_retry_factor": 8,
        "runtime": 20,
        "threads": 2,
        "slurm_account": "ci_acct",
        "variants": {"base": {"gpu": 1, "gpu_model": "ci_gpu", "constraint": "ci_feat", "slurm_extra": "--nice=7"}},
    }
    local, slurm = tmp_path / "local", tmp_path / "slurm"
    for d in (local, slurm):
        d.mkdir()
        (d / "config.yaml").write_text(yaml.safe_dump(config))

    ran_local = run(local, local / "config.yaml", "--cores", "2")
    assert ran_local.returncode == 0, ran_local.stderr[-3000:]
    # the profile by name, as users run it: found where `python -m traitscope.workflow.profiles` linked it
    env = {"XDG_CONFIG_HOME": str(tmp_path / "xdg")}
    linked = subprocess.run(
        [sys.executable, "-m", "traitscope.workflow.profiles"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
    )
    assert linked.returncode == 0, linked.stderr
    ran = run(
        slurm,
        slurm / "config.yaml",
        "--profile",
        "slurm",
        "--jobs",
        "4",
        "--slurm-status-command",
        "squeue",
        "--slurm-no-account",
        "--slurm-init-seconds-before-status-checks",
        "2",
        "--seconds-between-status-checks",
        "2",
        "--latency-wait",
        "5",
        env=env,
    )
    log = ran.stdout + ran.stderr
    assert ran.returncode == 0, log[-4000:]
    assert "Using profile slurm" in log

    submitted = re.findall(r"Job \d+ has been submitted with SLURM jobid (\d+) \(log: (\S+)\)", log)
    seen: dict[str, list[str]] = {}
    for jobid, logpath in submitted:
        rule = re.search(r"rule_(\w+)", logpath).group(1)
        info = subprocess.run(["scontrol", "show", "job", jobid], capture_output=True, text=True).stdout
        assert info, f"job {jobid} ({rule}) no longer known to slurmctld"
        seen.setdefault(rule, []).append(info)
    model_jobs = seen["capture"] + seen["capture_trait"]
    done = [i for i in model_jobs if field(i, "JobState") == "COMPLETED"]
    assert len(done) == 1 + 2  # benign_eval's one shard and the two traits' captures
    for info in done:
        assert field(info, "Partition") == "gpu" and field(info, "TresPerJob") == "gres:gpu:ci_gpu:1", info
        assert field(info, "NumCPUs") == "2" and field(info, "CPUs/Task") == "2", info  # = threads
        assert field(info, "Features") == "ci_feat" and field(info, "Nice") == "7", info  # per-variant extras
        assert field(info, "Account") == "ci_acct", info
        assert field(info, "MinMemoryNode") == "4000M", info  # the retry: 500 MB x 8
    killed = [i for i in model_jobs if field(i, "JobState") != "COMPLETED"]
    assert killed, "no model job was killed for memory on its first try"
    for info in killed:
        assert field(info, "MinMemoryNode") == "500M" and field(info, "JobState") in ("OUT_OF_MEMORY", "FAILED"), info
    for rule in ("prep_prompts", "extract_vectors", "project"):
        for info in seen[rule]:
            assert field(info, "Partition") == "cpu" and "gres:gpu" not in info, info
            assert field(info, "JobState") == "COMPLETED" and field(info, "CPUs/Task") == "1", info
            assert field(info, "Account") != "ci_acct", info  # the account was given for model jobs only
    assert all(field(i, "MinMemoryNode") == "16000M" for i in seen["extract_vectors"])  # set-resources
    assert all(field(i, "MinMemoryNode") == "4000M" for i in seen["prep_prompts"])  # default-resources

    a = pd.read_parquet(local / TARGET).sort_values(["id", "trait", "method", "position"]).reset_index(drop=True)
    b = pd.read_parquet(slurm / TARGET).sort_values(["id", "trait", "method", "position"]).reset_index(drop=True)
    assert len(a) > 0
    pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-4, atol=1e-3)
