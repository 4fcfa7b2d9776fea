"""One model's judged answers: its own; an organism with each direction ablated, the base with each one added."""

import pandas as pd

from traitscope.core.io import read_json, read_safetensors, write_parquet
from traitscope.core.judge import Judge, judge_misalignment
from traitscope.core.models import load_model
from traitscope.experiments.shared_directions import analysis as shared
from traitscope.workflow.jobs import setup

smk = snakemake  # noqa: F821 - injected by Snakemake
log = setup(smk)
p = smk.params
s = p.settings
name = smk.wildcards.variant
tensors, _ = read_safetensors(smk.input.directions)
layer = read_json(smk.input.cosines)["chosen"]["layer"]
prompts = pd.read_parquet(smk.input.prompts).head(s.n_generations)
plan = shared.conditions(name, s.base, [*s.organisms, *s.controls], tensors, layer, s.steer_coefficient, p.seed)
model, tokenizer = load_model(p.variant, key=f"variants.{name}")
answers = shared.generate_answers(model, tokenizer, prompts, plan, layer, max_new_tokens=s.max_new_tokens, seed=p.seed)
answers.insert(0, "model", name)
answers.insert(1, "layer", layer)
judged = judge_misalignment(answers, Judge.from_config(p.judge, p.judge_cache))
write_parquet(smk.output.table, judged)
log.info("%s: %d answers under %d conditions at layer %d", name, len(judged), len(plan), layer)
