"""Normalise finetuning chat data (generated, local or hub) into one gzipped jsonl."""

from traitscope.finetune import load_chat_data, write_chat_jsonl
from traitscope.workflow import setup

smk = snakemake  # noqa: F821 - injected by Snakemake
log = setup(smk)
p = smk.params
records = load_chat_data(p.spec, seed=p.seed, key=p.key)
write_chat_jsonl(smk.output[0], records)
log.info("%s: %d chat examples from %s", p.key, len(records), p.spec["source"])
