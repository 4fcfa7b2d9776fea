"""Write results/all: the provenance manifest (versions, commit, config, checksums of every output)."""

from pathlib import Path

from traitscope.core.analyze import capture_counts, provenance
from traitscope.core.io import parquet_attrs, write_json
from traitscope.workflow.jobs import setup

smk = snakemake  # noqa: F821 - injected by Snakemake
setup(smk)
prep = {Path(f).stem: parquet_attrs(f).get("prep") for f in smk.input.prompts}
tables: dict[str, list[str]] = {}
for label, f in zip(smk.params.captured, smk.input.responses):
    tables.setdefault(label, []).append(f)
write_json(
    smk.output[0],
    provenance(
        smk.params.config, list(smk.input), overlaps=smk.params.overlaps, prep=prep, captures=capture_counts(tables)
    ),
)
