"""Capture residual-stream activations of one (variant, prompt table, shard), all layers in one job."""

import pandas as pd

from traitscope.capture import capture_prompts, model_fingerprint
from traitscope.io import write_parquet, write_safetensors
from traitscope.models import load_model, resolve_model_path
from traitscope.workflow import capture_settings, setup

smk = snakemake  # noqa: F821 - injected by Snakemake
log = setup(smk)
p = smk.params
df = pd.read_parquet(smk.input.prompts)
if p.shard is not None:
    df = df[df["shard"] == int(p.shard)].reset_index(drop=True)
settings = capture_settings(p.capture, p.layers, p.seed, positions=p.positions, generate=p.generate,
                            max_new_tokens=p.max_new_tokens)
model, tokenizer = load_model(p.variant, key=f"variants.{p.variant_name}")
fingerprint = model_fingerprint(p.variant, resolve_model_path(p.variant["model"]))
tensors, meta, responses = capture_prompts(model, tokenizer, df, settings, model_key=fingerprint,
                                           cache_dir=p.cache_dir, progress_label=p.label)
meta.update(variant=p.variant_name, prompt_set=p.label)
write_parquet(smk.output.responses, responses)
write_safetensors(smk.output.activations, tensors, meta)
log.info("%s: captured %d prompts at %d layers, positions %s", p.label, len(df), len(p.layers), settings.positions)
