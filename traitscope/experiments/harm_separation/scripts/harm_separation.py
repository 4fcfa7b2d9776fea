"""Check that harmful and harmless instructions separate on the harm trait vector (held out)."""

from traitscope.core import plots
from traitscope.core.artifacts import ShardFiles, TraitVectors
from traitscope.core.io import write_json
from traitscope.experiments.harm_separation import analysis as harm_separation
from traitscope.workflow.jobs import setup

smk = snakemake  # noqa: F821 - injected by Snakemake
log = setup(smk)
check = smk.params.check
vectors = TraitVectors.load(smk.input.vectors, smk.input.sidecar)
# read part by part, projected as they are read: memory does not grow with the prompt sets
harmful, harmless = ShardFiles(smk.input.harmful), ShardFiles(smk.input.harmless)
result, layer_auc, dist = harm_separation.check_separation(
    vectors, [harmful], [harmless], min_auc=check.min_auc, seed=smk.params.seed
)
result.update(harmful_set=check.harmful, harmless_set=check.harmless)
write_json(smk.output.json, result)
plots.save(
    harm_separation.separation_figure(layer_auc, dist, result, smk.params.variant),
    smk.output.figure,
)
(log.info if result["passed"] else log.warning)(
    "harm separation check %s: eval AUC %.3f, extraction test AUC %.3f",
    "passed" if result["passed"] else "FAILED",
    result["eval_auc"],
    result["extraction_test_auc"],
)
