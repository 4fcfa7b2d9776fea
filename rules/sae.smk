# SAE features: one sparse autoencoder per sae.layers (trained here on the corpus's activations, or loaded in the
# SAELens format), then, per two-condition experiment, the features that tell the conditions apart.

if S.sae:
    if S.sae.source == "train":

        rule sae_train:
            input:
                activations=sae_corpus_shards,
            output:
                config=L.sae()["config"],
                weights=L.sae()["weights"],
                training=report(L.sae()["training"], caption="../workflow/report/sae_training.rst",
                                category=category("SAE features"), labels={"entry": "SAE training"}),
            params:
                sae=sae_train_settings,
                corpus=sae_corpus_pairs,
                seed=S.seed,
            log:
                L.log("sae_train", "layer_{layer}"),
            conda:
                ENV
            script:
                "../workflow/scripts/sae_train.py"

    rule sae_features:
        input:
            unpack(sae_feature_inputs),
        output:
            **reported(L.sae_features(), "SAE features", subcategory="{experiment}", figure="sae_features",
                       json="sae_features_json"),
        params:
            comparison=sae_comparison,
            sae=S.sae,
            sources=sae_sources(),
            variant=sae_model_spec,
            seed=S.seed,
        log:
            L.log("sae_features", "{experiment}"),
        conda:
            ENV
        script:
            "../workflow/scripts/sae_features.py"
