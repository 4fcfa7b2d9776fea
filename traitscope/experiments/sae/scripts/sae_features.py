"""SAE features that tell the two conditions of one experiment apart, next to the trait vectors (JSON, figure)."""

import functools

from traitscope.core import plots
from traitscope.core.artifacts import ActivationShard, TraitVectors, tensor_key
from traitscope.core.io import read_json, safetensors_keys, write_json
from traitscope.core.models import load_tokenizer
from traitscope.experiments.sae import features
from traitscope.experiments.sae.autoencoder import SparseAutoencoder
from traitscope.experiments.sae.features import compare_at_layer
from traitscope.experiments.sae.sources import is_remote, resolve_source
from traitscope.workflow.jobs import setup

smk = snakemake  # noqa: F821 - injected by Snakemake
log = setup(smk)
p, w = smk.params, smk.wildcards
c, s = p.comparison, p.sae


def at_layer(files, layer):
    """The shards' activations at one layer only (last token, response tokens and their ids), not every layer."""
    wanted = [tensor_key("last", layer), tensor_key("response", layer), "response.offsets", "response.token_ids"]
    return [
        ActivationShard.load(f, [k for k in wanted if k in stored])
        for f in files
        for stored in [set(safetensors_keys(f))]
    ]


vectors = [TraitVectors.load(v, sc) for v, sc in zip(smk.input.vectors, smk.input.sidecars)]
tok = load_tokenizer(p.variant, key=f"variants.{c.a_variant}")
decode = functools.lru_cache(maxsize=None)(lambda i: tok.decode([i]))
layers = []
for layer, src in p.sources.items():
    sae = SparseAutoencoder.load(resolve_source(src, layer) if is_remote(src) else src)
    # the SAE reads the residual stream: traits read at an attn/mlp site are left out of the comparison (logged)
    dirs = {
        v.trait: v.get(v.best_method, layer).numpy() for v in vectors if layer in v.info["layers"] and v.site == "resid"
    }
    if skipped := sorted(v.trait for v in vectors if v.site != "resid"):
        log.info(
            "layer %d: traits %s are read at attn/mlp sites, not compared with residual-stream SAE features",
            layer,
            skipped,
        )
    res = compare_at_layer(
        sae,
        at_layer(smk.input.a, layer),
        at_layer(smk.input.b, layer),
        layer,
        position=s.position,
        directions=dirs,
        decode=decode,
        top=s.top_features,
        n_tokens=s.top_tokens,
        fraction=s.selection_fraction,
        n_random=s.n_random,
        n_boot=s.n_boot,
        seed=p.seed,
    )
    training = f"{src}/training.json"
    res["sae"] = {
        "source": src,
        "d_sae": sae.d_sae,
        "architecture": sae.architecture,
        "k": sae.k,
        "training": read_json(training) if training in smk.input.sae_files else None,
    }
    layers.append(res)
    log.info("%s layer %d: %s", w.experiment, layer, res["summary"])
result = {
    "experiment": w.experiment,
    "position": s.position,
    "model": vectors[0].model,
    "seed": p.seed,
    "conditions": {
        "a": {"label": c.a_label, "variant": c.a_variant, "prompt_set": c.a_set},
        "b": {"label": c.b_label, "variant": c.b_variant, "prompt_set": c.b_set},
    },
    "selection": {"fraction": s.selection_fraction, "rule": "seeded sha256 of the prompt id; shared ids share a side"},
    "layers": layers,
    "definitions": {
        "features": "the top sae.top_features features by |Cohen's d| on the selection half, each reported on the "
        "report half: cohens_d (a minus b) with d_ci_low/d_ci_high (percentile bootstrap), Welch's t/p, "
        "auc (a = 1) with its stratified bootstrap CI, auc_oriented (the selection half's sign), the "
        "share of rows where it is active, and its top-activating response tokens",
        "trait_aucs": "each trait's best-method vector at the layer, ROC-AUC on the report half, sign from the "
        "selection half",
        "random_baseline": "the same AUC of sae.n_random random unit directions at the layer",
        "summary": "the best feature's and the best trait vector's AUC against the random 95th percentile",
    },
}
write_json(smk.output.json, result)
plots.save(features.sae_features(result), smk.output.figure)
