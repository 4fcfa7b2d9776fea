"""Train a top-k SAE at one layer on the corpus's last-token and response-token activations (SAELens folder)."""

from traitscope.core.io import write_json
from traitscope.experiments.sae.autoencoder import corpus_rows, train_topk
from traitscope.workflow.jobs import setup

smk = snakemake  # noqa: F821 - injected by Snakemake
log = setup(smk)
p = smk.params
s = p.sae
rows = corpus_rows(list(smk.input.activations), s["layer"])
sae, stats = train_topk(
    rows,
    n_features=s["n_features"],
    k=s["k"],
    steps=s["steps"],
    batch_size=s["batch_size"],
    lr=s["lr"],
    seed=p.seed,
    holdout=s["holdout"],
    label=f"sae layer {s['layer']}",
)
sae.cfg.update(
    hook_name=f"residual stream after block {s['layer']}",
    hook_layer=s["layer"],
    trained_by="traitscope",
    corpus=[f"{v}/{c}" for v, c in p.corpus],
)
sae.save(smk.output.config.rsplit("/", 1)[0])
write_json(
    smk.output.training,
    {
        **stats,
        "layer": s["layer"],
        "corpus": [f"{v}/{c}" for v, c in p.corpus],
        "definitions": {
            "fvu_heldout": "fraction of variance unexplained on the held-out corpus rows",
            "dead_share_heldout": "share of features active on no held-out row",
            "l0_heldout": "mean active features per held-out row (k at most)",
        },
    },
)
log.info(
    "SAE layer %d: %d rows, FVU %.3f held out, %.1f%% dead features",
    s["layer"],
    len(rows),
    stats["fvu_heldout"],
    100 * stats["dead_share_heldout"],
)
