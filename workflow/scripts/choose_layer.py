"""The trait's sidecar with its layer chosen by steering effect (the AUC choice kept beside it)."""

import pandas as pd

from traitscope.core.io import read_json, write_json
from traitscope.core.layer_choice import choose_by_steering
from traitscope.workflow.jobs import setup

smk = snakemake  # noqa: F821 - injected by Snakemake
log = setup(smk)
info = choose_by_steering(
    read_json(smk.input.sidecar), pd.read_parquet(smk.input.table), smk.params.choice, smk.params.judge
)
write_json(smk.output[0], info)
log.info("%s: layer %d (%s)", info["trait"], info["best"]["layer"], info["best"]["reason"])
