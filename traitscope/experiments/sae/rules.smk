# sae: one sparse autoencoder per sae.layers (trained here on the corpus's activations, or loaded in the SAELens
# format), then, per two-condition contrast of the study's experiments, the features that tell the conditions apart.
SAE = S.experiment("sae")
SAE_SET = S.sae
SAE_VARIANT = SAE.variant(S, SAE_SET)
SAE_CORPUS = list(SAE.corpus(S, SAE_SET))


if SAE_SET.source == "train":

    rule sae_train:
        input:
            activations=shards(L.activations, [SAE_VARIANT], SAE_CORPUS),
        output:
            config=SAE.trained(L)["config"],
            weights=SAE.trained(L)["weights"],
            training=report(SAE.trained(L)["training"], caption="report/sae_training.rst",
                            category=category(SAE.title), labels={"entry": "SAE training"}),
        params:
            sae=lambda w: SAE.training(SAE_SET, w.layer),
            corpus=[(SAE_VARIANT, s) for s in SAE_CORPUS],
            seed=S.seed,
        log:
            L.log("sae_train", "layer_{layer}"),
        benchmark:
            L.benchmark("sae_train", "layer_{layer}")
        conda:
            ENV
        script:
            "scripts/sae_train.py"


SAE_CONTRASTS = S.sae_comparisons()  # comparison name -> its two conditions


rule sae_features:
    input:
        a=lambda w: shards(L.activations, [SAE_CONTRASTS[w.experiment].a_variant], [SAE_CONTRASTS[w.experiment].a_set]),
        b=lambda w: shards(L.activations, [SAE_CONTRASTS[w.experiment].b_variant], [SAE_CONTRASTS[w.experiment].b_set]),
        sae_files=SAE.source_files(L, SAE_SET),
        vectors=vector_files("vectors"),
        sidecars=vector_files("sidecar"),
        model=lambda w: model_inputs(SAE_CONTRASTS[w.experiment].a_variant),
    output:
        **reported(SAE.files(L), SAE.title, subcategory="{experiment}", figure="sae_features",
                   json="sae_features_json"),
    params:
        comparison=lambda w: SAE_CONTRASTS[w.experiment],
        sae=SAE_SET,
        sources=SAE.sources(L, SAE_SET),
        variant=lambda w: S.variants[SAE_CONTRASTS[w.experiment].a_variant],
        seed=S.seed,
    log:
        L.log("sae_features", "{experiment}"),
    benchmark:
        L.benchmark("sae_features", "{experiment}")
    conda:
        ENV
    script:
        "scripts/sae_features.py"
