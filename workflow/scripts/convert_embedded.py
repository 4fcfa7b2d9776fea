"""Convert an embedded GGUF model (shipped in a PyPI package) to a safetensors folder, once."""

from traitscope.core.sources import convert_embedded
from traitscope.workflow.jobs import setup

log = setup(snakemake)  # noqa: F821 - injected by Snakemake
out = convert_embedded(snakemake.wildcards.name, snakemake.output[0], snakemake.params.dtype)  # noqa: F821
log.info("converted embedded model %s to %s", snakemake.wildcards.name, out)  # noqa: F821
