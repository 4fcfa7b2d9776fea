"""Compute trait vectors (mean difference, logistic probe) per layer with held-out metrics."""

import pandas as pd
import torch

from traitscope.extract import extract_trait
from traitscope.io import read_safetensors, write_json, write_parquet, write_safetensors
from traitscope.workflow import setup

smk = snakemake  # noqa: F821 - injected by Snakemake
log = setup(smk)
p = smk.params
tensors, meta = read_safetensors(smk.input.activations)
table = pd.read_parquet(smk.input.table).set_index("id").loc[meta["ids"]].reset_index()
ext = p.extract
vectors, metrics, info = extract_trait(tensors, table, layers=p.layers, position=p.position, methods=ext["methods"],
                                       test_fraction=ext["test_fraction"], probe_c=ext["probe_C"],
                                       selection_method=ext["selection_method"], seed=p.seed)
sidecar = {
    "trait": p.trait, "variant": p.variant_name, "model": p.model, "position": p.position,
    "methods": ext["methods"], "layers": p.layers, "hidden_size": int(next(iter(vectors.values())).shape[0]),
    "n": int(len(table)), **info,
    "vectors": [{"key": f"{r.method}.layer_{r.layer}", "method": r.method, "layer": int(r.layer),
                 "metrics": {k: getattr(r, k) for k in ("auc", "accuracy", "cohens_d", "train_auc", "norm", "n_train", "n_test")}}
                for r in metrics.itertuples()],
    "activations_key": meta.get("key"),
}
write_parquet(smk.output.metrics, metrics.assign(trait=p.trait))
write_json(smk.output.sidecar, sidecar)
write_safetensors(smk.output.vectors, {k: v.to(torch.float32) for k, v in vectors.items()},
                  {"trait": p.trait, "model": p.model, "position": p.position, "best_layer": info["best"]["layer"]})
log.info("%s: best layer %s", p.trait, info["best"]["reason"])
