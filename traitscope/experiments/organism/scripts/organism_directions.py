"""Base-vs-finetuned directions per layer (train prompts) and their held-out detection (test prompts)."""

from traitscope.core import plots
from traitscope.core.artifacts import tensor_key
from traitscope.core.io import read_safetensors, write_json, write_parquet, write_safetensors
from traitscope.experiments.organism import analysis as organism
from traitscope.experiments.organism.analysis import choose_layer, directions_and_detection
from traitscope.workflow.jobs import setup

smk = snakemake  # noqa: F821 - injected by Snakemake
log = setup(smk)
p = smk.params
org = p.organism
layers = list(p.layers)
keys = [tensor_key("last", layer) for layer in layers]  # only the last-token activations the directions need
load = lambda paths: [read_safetensors(f, keys) for f in paths]  # noqa: E731
vectors, table = directions_and_detection(
    (load(smk.input.base_train), load(smk.input.finetuned_train)),
    (load(smk.input.base_test), load(smk.input.finetuned_test)),
    layers,
    org.methods,
    probe_c=org.probe_C,
    n_boot=org.n_boot,
    seed=p.seed,
)
chosen = choose_layer(table, org.ablate_method)
info = {
    "base": org.base,
    "finetuned": org.finetuned,
    "train_set": org.train,
    "test_set": org.test,
    "position": "last prompt token",
    "layers": layers,
    "methods": list(org.methods),
    "chosen": chosen,
    "per_layer": table.to_dict(orient="records"),
    "seed": p.seed,
    "definitions": {
        "auc": "held-out ROC-AUC, finetuned (1) vs base (0) activations projected on the unit direction",
        "mean_diff": "mean(finetuned) - mean(base) last-token activations on the train prompts",
        "probe": "logistic-regression direction, finetuned vs base, on the train prompts",
        "random_auc_p95": "95th percentile of the held-out AUCs of n_random random unit directions at "
        "the layer, each oriented on the train prompts (the control baseline)",
        "beats_random": "auc above random_auc_p95",
    },
}
write_safetensors(smk.output.directions, vectors, {k: v for k, v in info.items() if k != "per_layer"})
write_parquet(smk.output.table, table)
write_json(smk.output.json, info)
title = (
    f"Model organism '{org.finetuned}' vs '{org.base}': last-token directions fitted on '{org.train}', "
    f"tested on '{org.test}'"
)
plots.save(organism.organism_detection(table, chosen["layer"], title), smk.output.figure)
log.info("chosen layer %d: held-out AUC %.3f", chosen["layer"], chosen["heldout_auc"])
