"""The training trajectory: each step's test prompts on the organism's direction and the traits, and judged."""

import json
from pathlib import Path

import pandas as pd
import torch

from traitscope.core import plots
from traitscope.core.artifacts import ShardFiles, TraitVectors
from traitscope.core.finetune import PROVENANCE_FILE
from traitscope.core.io import write_json, write_parquet, write_safetensors
from traitscope.experiments.trajectory import analysis as trajectory
from traitscope.workflow.jobs import setup

smk = snakemake  # noqa: F821 - injected by Snakemake
log = setup(smk)
p = smk.params
s = p.settings
layers = list(p.layers)
total = int(json.loads((Path(smk.input.adapter) / PROVENANCE_FILE).read_text())["steps"])
per_variant = len(smk.input.test) // len(p.steps)  # every step's shards of the one test set, in step order
steps = [
    (total if step is None else int(step), variant, smk.input.test[i * per_variant : (i + 1) * per_variant])
    for i, (step, variant) in enumerate(p.steps)
]
judged = {v: pd.read_parquet(f) for (_, v), f in zip(p.steps, smk.input.judged)}
traits = [TraitVectors.load(v, c) for v, c in zip(smk.input.vectors, smk.input.sidecars)]
summary, result, direction = trajectory.analyse(
    ShardFiles(smk.input.base).last_token(layers),
    ShardFiles(smk.input.finetuned).last_token(layers),
    steps,
    judged,
    traits,
    s,
    p.seed,
)
write_parquet(smk.output.table, summary)
write_json(smk.output.json, result)
write_safetensors(
    smk.output.direction, {"direction": torch.from_numpy(direction)}, {"layer": result["direction"]["layer"]}
)
title = (
    f"Training trajectory of '{s.finetuned}' (steps {', '.join(map(str, result['steps']))}): '{s.test}' prompts "
    f"(n={result['n_test']}) per step"
)
plots.save(trajectory.trajectory_figure(summary, result, title), smk.output.figure)
d = result["direction"]
log.info(
    "direction: change %.3g (random |change| p95 %.3g), d_z %.2f", d["change"], d["random_abs_change_p95"], d["dz"]
)
