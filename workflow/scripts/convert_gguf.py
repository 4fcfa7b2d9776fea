"""Convert a researcher's GGUF model file to a safetensors folder, once."""

from pathlib import Path

from traitscope.core.sources import convert_gguf
from traitscope.workflow.jobs import setup

log = setup(snakemake)  # noqa: F821 - injected by Snakemake
out = convert_gguf(
    Path(snakemake.input.gguf), snakemake.output[0], {"gguf": snakemake.input.gguf}, dtype=snakemake.params.dtype
)  # noqa: F821
log.info("converted %s to %s", snakemake.input.gguf, out)  # noqa: F821
