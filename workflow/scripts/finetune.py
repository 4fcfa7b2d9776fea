"""Train a LoRA adapter on the normalised chat data; save it with its provenance, loss table and curve."""

from traitscope.core import plots
from traitscope.core.finetune import finetune
from traitscope.core.io import write_parquet
from traitscope.workflow.jobs import setup

smk = snakemake  # noqa: F821 - injected by Snakemake
log = setup(smk)
p, name = smk.params, smk.wildcards.ft
# the adapter is kept after each listed checkpoint step (finetune_checkpoint reads it). Not a param: the list does not
# change what this job writes, and a step added later is trained again to, in its own job, to the same weights.
keep = tuple(smk.config["finetune"][name].get("checkpoints") or ())
history, provenance = finetune(
    p.base, smk.input.data, p.spec, smk.output.adapter, name=name, checkpoint_dir=p.checkpoint_dir, keep_steps=keep
)
write_parquet(smk.output.history, history)
plots.save(plots.loss_curve(history, name, provenance), smk.output.figure)
log.info(
    "finetune %s: train loss %.3f -> %.3f, eval loss %s -> %s",
    name,
    provenance["first_train_loss"],
    provenance["final_train_loss"],
    provenance["eval_loss_before"],
    provenance["eval_loss_after"],
)
