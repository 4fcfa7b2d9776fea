"""Check that harmful and harmless instructions separate on the harm trait vector (held out)."""

from traitscope import plots
from traitscope.analyze import harm_check, load_activations
from traitscope.io import read_json, read_safetensors, write_json
from traitscope.workflow import setup

smk = snakemake  # noqa: F821 - injected by Snakemake
log = setup(smk)
p = smk.params
vectors, _ = read_safetensors(smk.input.vectors)
sidecar = read_json(smk.input.sidecar)
harmful, meta = load_activations(list(smk.input.harmful))
harmless, _ = load_activations(list(smk.input.harmless))
result, layer_auc, dist = harm_check(vectors, sidecar, harmful, harmless, meta[0]["layers"], position=p.position,
                                     min_auc=p.min_auc, method=sidecar["best"]["method"], seed=p.seed)
result.update(harmful_set=p.harmful, harmless_set=p.harmless)
write_json(smk.output.json, result)
plots.save(plots.harm_separation(layer_auc, dist, result["best_layer"], p.min_auc, result["trait"], result["model"]),
           smk.output.figure)
(log.info if result["passed"] else log.warning)("harm separation check %s: eval AUC %.3f, extraction AUC %.3f",
                                                 "passed" if result["passed"] else "FAILED", result["eval_auc"],
                                                 result["extraction_heldout_auc"])
