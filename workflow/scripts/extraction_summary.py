"""Held-out extraction metrics of every trait in one table and one figure."""

from traitscope.core import plots
from traitscope.core.artifacts import TraitVectors, best_layers, trait_sites
from traitscope.core.io import read_parquets, write_html_table, write_parquet
from traitscope.workflow.jobs import setup

smk = snakemake  # noqa: F821 - injected by Snakemake
log = setup(smk)
metrics = read_parquets(smk.input.metrics)
sidecars = [TraitVectors.load_info(f) for f in smk.input.sidecars]
best = best_layers(sidecars)
metrics["best_layer"] = metrics["trait"].map(best)
metrics["site"] = metrics["trait"].map(trait_sites(sidecars))
write_parquet(smk.output.table, metrics)
write_html_table(
    smk.output.table_html,
    metrics,
    "Trait extraction: held-out metrics per trait, method and layer",
    "the same rows as summary.parquet beside it",
)
plots.save(plots.extraction_summary(metrics, best, sidecars[0].variant or sidecars[0].model), smk.output.figure)
