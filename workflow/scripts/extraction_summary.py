"""Held-out extraction metrics of every trait in one table and one figure."""

import pandas as pd

from traitscope import plots
from traitscope.io import read_json, write_parquet
from traitscope.workflow import setup

smk = snakemake  # noqa: F821 - injected by Snakemake
log = setup(smk)
metrics = pd.concat([pd.read_parquet(f) for f in smk.input.metrics], ignore_index=True)
sidecars = [read_json(f) for f in smk.input.sidecars]
best = {s["trait"]: s["best"]["layer"] for s in sidecars}
metrics["best_layer"] = metrics["trait"].map(best)
write_parquet(smk.output.table, metrics)
plots.save(plots.extraction_summary(metrics, best, sidecars[0]["model"]), smk.output.figure)
