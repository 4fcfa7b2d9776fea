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
n_cut = int(responses["truncated"].sum())
meta.update(variant=w.variant, prompt_set=f"{smk.rule} {label}", n_truncated=n_cut)
if n_cut:  # counted per row in the responses table (column truncated) and here in the shard's metadata
    log.warning("%s: %d of %d prompts were longer than capture.max_length=%d tokens and lost their start "
                "(fix: raise capture.max_length up to the model's context)", label, n_cut, len(df), p.job.max_length)
write_parquet(smk.output.responses, responses)
ActivationShard(tensors, meta).save(smk.output.activations)
log.info("%s: captured %d prompts at %d layers, positions %s", label, len(df), len(p.job.layers), p.job.positions)
