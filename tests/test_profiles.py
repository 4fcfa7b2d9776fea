"""`snakemake --profile slurm` by name: `python -m traitscope.workflow.profiles` links the project's profiles where Snakemake
looks names up."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
from conftest import REPO

from traitscope.workflow.profiles import PROFILES, ProfileError, install


def test_install_links_every_profile_and_is_idempotent(tmp_path):
    lines = install(PROFILES, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["local", "slurm"]
    assert (tmp_path / "slurm").resolve() == (REPO / "profiles/slurm").resolve()
    assert len(lines) == 2 and all("->" in line for line in lines)
    assert all("already linked" in line for line in install(PROFILES, tmp_path))


def test_install_replaces_a_stale_link_but_never_a_users_profile(tmp_path):
    other = tmp_path / "old_checkout_profile"
    other.mkdir()
    os.symlink(other, tmp_path / "slurm")
    install(PROFILES, tmp_path)
    assert (tmp_path / "slurm").resolve() == (REPO / "profiles/slurm").resolve()
    target = tmp_path / "mine"
    (target / "local").mkdir(parents=True)  # a profile of the user's own
    (target / "local/config.yaml").write_text("cores: 1\n")
    with pytest.raises(ProfileError, match="not this project's profile.*fix"):
        install(PROFILES, target)
    assert (target / "local/config.yaml").read_text() == "cores: 1\n"
    assert (target / "slurm").resolve() == (REPO / "profiles/slurm").resolve()  # the other profile is still linked
    # the command warns and exits 0, so the README's set-up chain (`... && python -m traitscope.workflow.profiles && ...`) goes on
    from traitscope.workflow.profiles import main

    assert main(["--target", str(target)]) == 0 and (target / "local/config.yaml").read_text() == "cores: 1\n"


@pytest.mark.skipif(shutil.which("snakemake") is None, reason="snakemake not on PATH")
def test_the_literal_profile_command_finds_the_profile(tmp_path):
    """On a machine where only the README's set-up ran: `snakemake --profile slurm -n results/all`, literally."""
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "config")}
    before = subprocess.run(
        ["snakemake", "--profile", "slurm", "-n", "results/all"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert before.returncode != 0 and "no profile.yaml (or config.yaml) found" in before.stdout + before.stderr
    setup = subprocess.run(
        [sys.executable, "-m", "traitscope.workflow.profiles"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert setup.returncode == 0, setup.stderr
    assert (tmp_path / "config/snakemake/slurm").resolve() == (REPO / "profiles/slurm").resolve()
    dry = subprocess.run(
        ["snakemake", "--profile", "slurm", "-n", "results/all"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    out = dry.stdout + dry.stderr
    assert dry.returncode == 0, out[-3000:]
    assert "Using profile slurm" in out and "activation budget" in out
    assert "slurm_partition=gpu" in out and "cpus_per_task=" in out  # model jobs with the profile's executor
