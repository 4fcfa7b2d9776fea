"""Write results/all: the provenance manifest (versions, commit, config, checksums of every output)."""

from traitscope.analyze import provenance
from traitscope.io import write_json
from traitscope.workflow import setup

smk = snakemake  # noqa: F821 - injected by Snakemake
setup(smk)
write_json(smk.output[0], provenance(smk.params.config, list(smk.input), overlaps=smk.params.overlaps))
