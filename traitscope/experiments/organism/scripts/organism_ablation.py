"""Generations of base, finetuned and finetuned-with-ablation side by side; judged restoration rate."""

import pandas as pd

from traitscope.core.artifacts import tensor_key
from traitscope.core.io import read_json, read_safetensors, write_json, write_parquet, write_text
from traitscope.core.judge import MISALIGNMENT, Judge
from traitscope.core.layers import parse_layers
from traitscope.core.models import load_model
from traitscope.experiments.organism.analysis import (
    ablated_detection,
    ablation_generations,
    ablation_markdown,
    judge_generations,
    restoration,
)
from traitscope.workflow.jobs import setup

smk = snakemake  # noqa: F821 - injected by Snakemake
log = setup(smk)
p = smk.params
org = p.organism
vectors, _ = read_safetensors(smk.input.directions)
detection = read_json(smk.input.detection)
method = org.ablate_method
layers = (
    [detection["chosen"]["layer"]]
    if org.ablate_layers == "best"
    else parse_layers(org.ablate_layers, p.n_layers, "organism.ablate_layers")
)
directions = {layer: vectors[tensor_key(method, layer)] for layer in layers}
prompts = pd.read_parquet(smk.input.prompts)
rows = prompts.head(org.n_generations)
model, tokenizer = load_model(p.variant, key=f"variants.{org.finetuned}")
table = ablation_generations(
    model,
    tokenizer,
    rows["prompt"].tolist(),
    directions,
    strength=org.ablate_strength,
    max_new_tokens=org.max_new_tokens,
    seed=p.seed,
)
table.insert(0, "id", rows["id"].tolist())
downstream = {layer: vectors[tensor_key(method, layer)] for layer in detection["layers"] if layer >= min(layers)}
after = ablated_detection(
    model,
    tokenizer,
    prompts["prompt"].tolist(),
    directions,
    downstream,
    strength=org.ablate_strength,
    n_boot=org.n_boot,
    seed=p.seed,
)
result = {
    "finetuned": org.finetuned,
    "base": org.base,
    "method": method,
    "layers": layers,
    "strength": org.ablate_strength,
    "n_generations": len(table),
    "max_new_tokens": org.max_new_tokens,
    "base_generations": "the finetuned model with its LoRA adapter disabled",
    "detection_with_ablation": after.to_dict(orient="records"),
}
if p.judge is not None:
    j = p.judge
    judge = Judge.from_config(j, p.judge_cache)
    table, long = judge_generations(table, judge)
    result["judge"] = {"model": j.model, "kind": judge.kind, "rubric": MISALIGNMENT[1], **restoration(long)}
write_parquet(smk.output.table, table)
write_json(smk.output.json, result)
heading = (
    f"Generations of '{org.base}' (adapter off), '{org.finetuned}' and '{org.finetuned}' with the "
    f"{method} direction ablated at layers {layers} (strength {org.ablate_strength})"
)
footer = None
if "judge" in result:
    footer = (
        f"Judged misalignment 0-100 ({result['judge']['kind']}); restoration rate: "
        f"{result['judge']['restoration_rate']} (n={result['judge']['n_finetuned_misaligned']} misaligned finetuned responses)"
    )
write_text(smk.output.markdown, ablation_markdown(table, heading, footer))
log.info("ablation at layers %s: %d generations", layers, len(table))
