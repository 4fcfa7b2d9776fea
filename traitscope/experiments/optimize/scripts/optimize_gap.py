"""Extracted vs optimised steering vectors, all traits: extraction_gap.json and optimization_curves.png."""

from traitscope.core import plots
from traitscope.core.io import read_json, read_parquets, write_json
from traitscope.experiments.optimize import analysis as optimize
from traitscope.workflow.jobs import setup

smk = snakemake  # noqa: F821 - injected by Snakemake
setup(smk)
sidecars = [read_json(f) for f in smk.input.sidecars]
history = read_parquets(smk.input.histories)
write_json(
    smk.output.json,
    {
        "definition": "cosine(extracted, optimised); delta = mean judged trait score (0-100) with the vector added at "
        "coefficient x mean residual norm minus unsteered, on the CMA-ES training prompts and held-out prompts; "
        "random_search_delta_best: the best training delta of random search at the same evaluation budget (z drawn "
        "from CMA-ES's starting distribution, never adapted), the control of train_delta_best",
        "judge_model": sidecars[0]["judge_model"],
        "judge_kind": sidecars[0]["judge_kind"],
        "traits": {
            s["trait"]: {
                "layer": s["layer"],
                "coefficient": s["coefficient"],
                "train_delta_best": s["train_delta_best"],
                "random_search_delta_best": s["random_search_delta_best"],
                "beats_random_search": s["train_delta_best"] > s["random_search_delta_best"],
                **s["extraction_gap"],
            }
            for s in sidecars
        },
    },
)
n_train = {s["trait"]: s["extraction_gap"]["train"]["n_prompts"] for s in sidecars}
plots.save(optimize.optimization_curves(history, sidecars[0]["judge_kind"], n_train), smk.output.figure)
