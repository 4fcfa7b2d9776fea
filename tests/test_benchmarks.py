"""Every benchmark runs, in its short mode (seconds, a tiny model or study), and prints its figures: none can rot.
A benchmark without a --short mode fails here."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import REPO

BENCHMARKS = sorted((REPO / "benchmarks").glob("*.py"))
FIGURES = {  # what each must print: its measured figures
    "capture_throughput.py": ["ratio capture / bare truncated stack:", "ratio capture / full forward:"],
    "capture_memory.py": ["peak RSS at 20 (MB)", "RESULTS {"],
    "dag_scale.py": ["== two-step:", "== stream:", "written per prompt:", "jobs submitted to SLURM:"],
    "quantized_vectors.py": ["safety/harmful_instruction", "RESULTS [{"],
    "generation_batch.py": ["batch 16: ", "ms per generated token per row", "x the speed of batch 16"],
    "convert_memory.py": ["MB of float32 weights", "peak RSS short:", "RESULTS {"],
    "qlora_cpu_autograd.py": ["cpu_4bit_autograd true : held-out loss", "cpu_4bit_autograd false: held-out loss"],
    # every row of the GPU check runs on the CPU; the judged ones pass (a failing row exits 1)
    "gpu_check.py": [
        "capture / bare ",
        "steered generation  | layer",
        "device_map auto     | the CPU with part offloaded to disk",
        "4-bit capture       | NF4",
        "QLoRA               | ",
        "QLoRA peak memory   | ",
    ],
}


def test_every_benchmark_is_listed():
    assert {b.name for b in BENCHMARKS} == set(FIGURES)


@pytest.mark.parametrize("bench", BENCHMARKS, ids=lambda p: p.name)
def test_benchmark_runs_in_short_mode(bench):
    proc = subprocess.run(
        [sys.executable, str(bench), "--short"], capture_output=True, text=True, timeout=600, cwd=REPO
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    for figure in FIGURES[bench.name]:
        assert figure in proc.stdout, proc.stdout[-3000:]


def test_the_capture_throughput_check_fails_below_its_floor():
    """--min-ratio is the check that capture stays near its limit: a floor it cannot reach makes it exit 1."""
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "capture_throughput.py"), "--short", "--min-ratio", "1000"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
    )
    assert proc.returncode == 1 and "below --min-ratio 1000" in proc.stderr, proc.stderr[-2000:]
