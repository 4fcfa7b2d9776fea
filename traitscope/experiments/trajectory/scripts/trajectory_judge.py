"""One training step's own answers to the test prompts (from its capture), judged for misalignment."""

import pandas as pd

from traitscope.core.io import read_parquets, write_parquet
from traitscope.core.judge import Judge, judge_misalignment
from traitscope.experiments.trajectory import analysis as trajectory
from traitscope.workflow.jobs import setup

smk = snakemake  # noqa: F821 - injected by Snakemake
log = setup(smk)
p = smk.params
answers = trajectory.answers_to_judge(read_parquets(smk.input.responses), pd.read_parquet(smk.input.prompts), p.n)
judged = judge_misalignment(answers, Judge.from_config(p.judge, p.judge_cache))
judged.insert(0, "variant", smk.wildcards.variant)
write_parquet(smk.output.table, judged)
log.info("%s: %d answers, mean misalignment %.1f", smk.wildcards.variant, len(judged), judged["trait_score"].mean())
