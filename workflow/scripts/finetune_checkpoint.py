"""The adapter of a finetune after one checkpoint step (finetune.<name>.checkpoints), from the training's cache."""

from traitscope.core.finetune import checkpoint_adapter
from traitscope.workflow.jobs import setup

smk = snakemake  # noqa: F821 - injected by Snakemake
log = setup(smk)
p, name, step = smk.params, smk.wildcards.ft, int(smk.wildcards.step)
provenance = checkpoint_adapter(
    p.base,
    smk.input.data,
    p.spec,
    smk.input.final,
    smk.output.adapter,
    name=name,
    step=step,
    checkpoint_dir=p.checkpoint_dir,
)
log.info("finetune %s: the adapter after step %d of %d", name, step, provenance["of_steps"])
