"""Normalise finetuning chat data (generated, local or hub) into one gzipped jsonl."""

from traitscope.core.finetune import load_chat_data, write_chat_jsonl
from traitscope.workflow.jobs import setup

smk = snakemake  # noqa: F821 - injected by Snakemake
log = setup(smk)
spec = smk.params.spec
key = f"finetune.{smk.wildcards.ft}.data"
records = load_chat_data(spec.data, seed=spec.seed, key=key)
write_chat_jsonl(smk.output[0], records)
log.info("%s: %d chat examples from %s", key, len(records), spec.data.source)
