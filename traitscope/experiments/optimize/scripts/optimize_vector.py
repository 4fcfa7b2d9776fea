"""CMA-ES search for a steering vector in a PCA subspace, starting from the extracted vector."""

from pathlib import Path

import pandas as pd

from traitscope.core.artifacts import ActivationShard, TraitVectors, tensor_key
from traitscope.core.io import content_hash, write_json, write_parquet, write_safetensors
from traitscope.core.specs import as_dict
from traitscope.core.sweep import build_task, layer_norms
from traitscope.core.traits import trait_description
from traitscope.experiments.optimize.analysis import extraction_gap, optimise, pca_basis
from traitscope.workflow.jobs import setup

smk = snakemake  # noqa: F821 - injected by Snakemake
log = setup(smk)
p = smk.params
opt = p.optimize
vectors = TraitVectors.load(smk.input.vectors, smk.input.sidecar)
sidecar, position = vectors.info, vectors.position
layer, method = vectors.best_layer, vectors.best_method
v0 = vectors.get(method, layer)
site = vectors.site
acts = ActivationShard.load_at(smk.input.activations, position, [layer], site)
x, ok = acts.pooled(position, layer, site)
basis = pca_basis(x[ok], opt.pca_components, p.seed)
prompts = pd.read_parquet(smk.input.prompts)["prompt"].tolist()[: opt.n_prompts]
task = build_task(
    variant=p.variant,
    judge_cfg=p.judge,
    judge_cache=p.judge_cache,
    trait=p.trait,
    description=trait_description(p.trait, p.trait_spec),
    prompts=prompts,
    layer=layer,
    norm=layer_norms(acts, position, [layer], site)[layer],
    max_new_tokens=opt.max_new_tokens,
    seed=p.seed,
    site=site,
)
key = content_hash(p.trait, sidecar["activations_key"], as_dict(opt), p.judge.model, prompts, p.seed)
checkpoint = Path(p.checkpoint_dir) / f"{p.trait.replace('/', '__')}-{key}.json"
result = optimise(
    task,
    v0,
    basis,
    coef=opt.coefficient,
    population=opt.population,
    iterations=opt.iterations,
    sigma0=opt.sigma0,
    seed=p.seed,
    checkpoint=checkpoint,
)
gap = extraction_gap(task, v0, result["vector"], opt.coefficient, p.seed)
write_parquet(smk.output.history, result["history"].assign(trait=p.trait))
meta = {
    "trait": p.trait,
    "model": sidecar["model"],
    "layer": layer,
    "start": tensor_key(method, layer),
    "position": position,
    "site": site,
    "coefficient": opt.coefficient,
    "coefficient_units": "mean residual norm" if site == "resid" else f"mean {site} output norm",
    "norm": task.norm,
    "pca_components": int(basis.shape[0]),
    "z": result["z"],
    "baseline_train": result["baseline_train"],
    "train_delta_best": result["train_delta"],
    "random_search_delta_best": float(result["history"].query("search == 'random'")["fitness"].max()),
    "extraction_gap": gap,
    "judge_model": p.judge.model,
    "judge_kind": task.judge.kind,
    "settings": as_dict(opt),
}
write_json(smk.output.sidecar, meta)
write_safetensors(
    smk.output.vector, {tensor_key("optimized", layer): result["vector"]}, {"trait": p.trait, "layer": layer}
)
log.info(
    "%s: cosine to extracted %.3f, held-out delta extracted %.1f vs optimised %.1f",
    p.trait,
    gap["cosine"],
    gap["heldout"]["extracted_delta"],
    gap["heldout"]["optimised_delta"],
)
