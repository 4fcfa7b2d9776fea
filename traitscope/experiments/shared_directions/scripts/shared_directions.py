"""Each organism's direction (organism minus base, last prompt token) per layer, and their cosines."""

from traitscope.core import plots
from traitscope.core.artifacts import ShardFiles
from traitscope.core.io import write_json, write_parquet, write_safetensors
from traitscope.experiments.shared_directions import analysis as shared
from traitscope.workflow.jobs import setup

smk = snakemake  # noqa: F821 - injected by Snakemake
log = setup(smk)
p = smk.params
s = p.settings
layers = list(p.layers)
names = [*s.organisms, *s.controls]
per_variant = len(smk.input.base)  # every variant's shards of the one train set, in the order of `names`
organisms = {
    name: ShardFiles(smk.input.organisms[i * per_variant : (i + 1) * per_variant]).last_token(layers)
    for i, name in enumerate(names)
}
base = ShardFiles(smk.input.base).last_token(layers)
dirs, reliability, n_train = shared.fit_directions(base, organisms, layers, p.seed)
hidden = int(next(iter(dirs[names[0]].values())).shape[-1])
table = shared.cosine_table(
    dirs, list(s.organisms), list(s.controls), shared.random_cosine_p95(hidden, s.n_random, p.seed)
)
chosen = shared.choose_layer(table, s.layer)
info = {
    "base": s.base,
    "organisms": list(s.organisms),
    "controls": list(s.controls),
    "train_set": s.train,
    "n_train": n_train,
    "position": "last prompt token",
    "layers": layers,
    "n_random": s.n_random,
    "chosen": chosen,
    "reliability": {v: {"by_layer": {str(k): x for k, x in r.items()}} for v, r in reliability.items()},
    "norms": {v: {str(k): float((d**2).sum() ** 0.5) for k, d in by.items()} for v, by in dirs.items()},
    "pairs": table.to_dict(orient="records"),
    "seed": p.seed,
    "definitions": {
        "direction": "mean last-token activation of the organism minus the base's, on the same train prompts",
        "random_p95": "95th percentile of |cosine| between n_random pairs of random unit directions (isotropic)",
        "reliability": "cosine of one organism's directions fitted on two random halves of the train prompts",
        "kind": "organisms: two organisms; control: a pair with a finetuning control",
    },
}
write_safetensors(smk.output.directions, shared.direction_tensors(dirs), {"layers": layers, "chosen": chosen})
write_parquet(smk.output.table, table)
write_json(smk.output.json, info)
title = f"Directions of {', '.join(names)} against '{s.base}', fitted on '{s.train}' (n={n_train} prompts, last token)"
plots.save(shared.cosines_figure(table, reliability, chosen, names, title), smk.output.figure)
log.info("layer %d: mean cosine between organisms %.3f", chosen["layer"], chosen["mean_cosine"])
