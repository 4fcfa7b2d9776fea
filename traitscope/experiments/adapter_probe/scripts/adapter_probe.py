"""Adapter probe: the top singular directions of each LoRA update against the traits and the organism's direction."""

from traitscope.core import plots
from traitscope.core.artifacts import TraitVectors
from traitscope.core.io import write_json, write_parquet
from traitscope.experiments.adapter_probe import analysis as adapter_probe
from traitscope.workflow.jobs import setup

smk = snakemake  # noqa: F821 - injected by Snakemake
log = setup(smk)
p = smk.params.probe
updates = adapter_probe.lora_updates(smk.input.adapter)
vectors = [TraitVectors.load(v, s) for v, s in zip(smk.input.vectors, smk.input.sidecars)]
refs = adapter_probe.references(vectors, smk.input.organism[0] if smk.input.organism else None)
cells = adapter_probe.probe(updates, refs, top_k=p.top_k, n_random=p.n_random, seed=smk.params.seed)
info = {
    "finetune": smk.wildcards.ft,
    "n_modules": len(updates),
    "top_k": p.top_k,
    "n_random": p.n_random,
    "seed": smk.params.seed,
    "organism_direction": bool(smk.input.organism),
}
result = adapter_probe.summary(cells, info)
write_json(smk.output.json, result)
write_parquet(smk.output.table, cells)
plots.save(adapter_probe.adapter_probe_figure(cells, result), smk.output.figure)
log.info(
    "adapter probe %s: %s",
    smk.wildcards.ft,
    {r: f"{v['n_beats_random']}/{v['n_cells']}" for r, v in result["references"].items()},
)
