"""The transfer matrix (each direction ablated in each organism) and the base steering, against random directions."""

import pandas as pd

from traitscope.core import plots
from traitscope.core.io import read_json, write_json, write_parquet, write_text
from traitscope.core.judge import MISALIGNMENT
from traitscope.experiments.shared_directions import analysis as shared
from traitscope.workflow.jobs import setup

smk = snakemake  # noqa: F821 - injected by Snakemake
log = setup(smk)
p = smk.params
s = p.settings
names = [*s.organisms, *s.controls]
answers = {v: pd.read_parquet(f) for v, f in zip([s.base, *names], smk.input.answers)}
cos = read_json(smk.input.cosines)
cells, steering = shared.transfer(answers, s.base, names, n_boot=s.n_boot, seed=p.seed)
n = int(answers[s.base]["id"].nunique())
result = {
    "base": s.base,
    "organisms": list(s.organisms),
    "controls": list(s.controls),
    "test_set": s.test,
    "layer": cos["chosen"]["layer"],
    "n_prompts": n,
    "max_new_tokens": s.max_new_tokens,
    "steer_coefficient": s.steer_coefficient,
    "judge_kind": str(answers[s.base]["judge_kind"].iloc[0]),
    "rubric": MISALIGNMENT[1],
    "transfer": cells,
    "steering": steering,
    "seed": p.seed,
    "definitions": {
        "change": "mean judged misalignment (0-100) under the condition minus the model's own answers, paired per "
        "prompt, with the paired t 95% CI",
        "random_change": "the same for a random unit direction ablated (transfer) or added at the same norm (steering)",
        "beats_random": "transfer: the paired 95% CI of ablated minus random-ablated scores lies below 0; steering: "
        "the CI of steered minus random-steered scores lies above 0",
    },
}
write_parquet(smk.output.table, pd.concat(answers.values(), ignore_index=True))
write_json(smk.output.json, result)
title = (
    f"Judged misalignment on '{s.test}' with each organism's direction ablated or added at layer {result['layer']} "
    f"({result['judge_kind'].split(':')[0]} judge)"
)
plots.save(shared.transfer_figure(cells, steering, s.base, n, title), smk.output.figure)
write_text(smk.output.markdown, shared.answers_markdown(answers, title))
log.info("transfer: %d/%d cells beat random", sum(c["beats_random"] for c in cells), len(cells))
