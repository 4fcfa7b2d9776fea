"""Running the real Snakemake DAG from tests: the command, a dry run's plan, and copies of a finished study."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def smk_cmd(workdir: Path, configfile: Path, *args: str, cores: str = "2") -> list[str]:
    """``snakemake`` on the project's Snakefile in ``workdir`` with ``configfile``: the README's command."""
    return [
        sys.executable,
        "-m",
        "snakemake",
        "-s",
        str(REPO / "Snakefile"),
        "-d",
        str(workdir),
        "--configfile",
        str(configfile),
        "--cores",
        cores,
        *args,
    ]


def smk(
    workdir: Path, configfile: Path, *args: str, env: dict[str, str] | None = None, timeout: int = 1200
) -> subprocess.CompletedProcess:
    cmd = smk_cmd(workdir, configfile, *args)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})})


def planned_jobs(proc: subprocess.CompletedProcess) -> dict[str, int]:
    """Rule -> count from a dry run's job stats table."""
    out = proc.stdout + proc.stderr
    if "Nothing to be done" in out:
        return {}
    table = out.split("Job stats:")[1].split("total")[0]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M)}


def ran_rules(proc: subprocess.CompletedProcess) -> list[str]:
    """The rules a run (or a dry run) lists as jobs, in order."""
    return re.findall(r"^\s*(?:local)?rule (\w+):", proc.stdout + proc.stderr, re.M)


def copy_study(source: Path, dest: Path) -> Path:
    """A copy of a finished study's folder (config, results, Snakemake's records) that a test may damage; files are
    copied (the activation shards' hard links to the cache become two files) and keep their modification times."""
    shutil.copytree(source, dest, symlinks=True)
    return dest
