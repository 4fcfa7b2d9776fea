"""Capture activations of one (variant, prompt table[, shard]) at every requested layer in one job."""

import pandas as pd

from traitscope.artifacts import ActivationShard
from traitscope.capture import capture_prompts, model_fingerprint
from traitscope.io import write_parquet
from traitscope.models import load_model, resolve_model_path
from traitscope.workflow import setup

smk = snakemake  # noqa: F821 - injected by Snakemake
log = setup(smk)
p, w = smk.params, smk.wildcards
df = pd.read_parquet(smk.input.prompts)
shard = w.get("shard")
if shard is not None:
    df = df[df["shard"] == int(shard)].reset_index(drop=True)
label = " ".join(str(v) for v in w)
model, tokenizer = load_model(p.variant, key=f"variants.{w.variant}")
fingerprint = model_fingerprint(p.variant, resolve_model_path(p.variant.model))
tensors, meta, responses = capture_prompts(model, tokenizer, df, p.job, model_key=fingerprint, cache_dir=p.cache_dir,
                                           progress_label=label)
meta.update(variant=w.variant, prompt_set=f"{smk.rule} {label}")
write_parquet(smk.output.responses, responses)
ActivationShard(tensors, meta).save(smk.output.activations)
log.info("%s: captured %d prompts at %d layers, positions %s", label, len(df), len(p.job.layers), p.job.positions)
