# organisms: a finetuned model organism (directions, detection, ablation) and backdoor detection.


if S.organism:

    rule organism_directions:
        input:
            base_train=shards(L.activations, [S.organism.base], [S.organism.train]),
            finetuned_train=shards(L.activations, [S.organism.finetuned], [S.organism.train]),
            base_test=shards(L.activations, [S.organism.base], [S.organism.test]),
            finetuned_test=shards(L.activations, [S.organism.finetuned], [S.organism.test]),
        output:
            **reported(L.organism_directions(S.organism.finetuned), "Model organism", figure="organism_detection",
                       json="organism_json"),
        params:
            organism=S.organism,
            layers=S.organism_layers(),
            seed=S.seed,
        log:
            L.log("organism_directions"),
        conda:
            ENV
        script:
            "../workflow/scripts/organism_directions.py"

    rule organism_ablation:
        input:
            directions=L.organism_directions(S.organism.finetuned)["directions"],
            detection=L.organism_directions(S.organism.finetuned)["json"],
            prompts=L.prompts(S.organism.test),
            model=model_inputs(S.organism.finetuned),
            judge=judge_inputs() if S.organism.judge else [],
        output:
            **reported(L.organism_ablation(S.organism.finetuned), "Model organism", markdown="organism_ablation"),
        params:
            organism=S.organism,
            variant=S.variants[S.organism.finetuned],
            model_files=MODEL_FILES[S.organism.finetuned],
            n_layers=S.n_layers(S.organism.base),
            judge=S.judge if S.organism.judge else None,
            judge_cache=L.cache("judge"),
            seed=S.seed,
        log:
            L.log("organism_ablation"),
        threads: model_job(fixed_variant(S.organism.finetuned))[0]
        resources:
            **model_job(fixed_variant(S.organism.finetuned))[1],
        conda:
            ENV
        script:
            "../workflow/scripts/organism_ablation.py"


if S.backdoor:

    rule backdoor_detection:
        input:
            trigger=per_set(L.scores, S.backdoor.variants(), [S.backdoor.trigger]),
            control=per_set(L.scores, S.backdoor.variants(), [S.backdoor.control]),
            trigger_tokens=per_set(L.token_scores, S.backdoor.variants(), [S.backdoor.trigger]),
            control_tokens=per_set(L.token_scores, S.backdoor.variants(), [S.backdoor.control]),
            trigger_acts=shards(L.activations, S.backdoor.variants(), [S.backdoor.trigger]),
            control_acts=shards(L.activations, S.backdoor.variants(), [S.backdoor.control]),
            sidecars=vector_files("sidecar"),
        output:
            **reported(L.backdoor(S.backdoor.variant), "Backdoor", comparison="backdoor_comparison",
                       early="backdoor_early", json="backdoor_json"),
        params:
            backdoor=S.backdoor,
            seed=S.seed,
        log:
            L.log("backdoor_detection"),
        conda:
            ENV
        script:
            "../workflow/scripts/backdoor_detection.py"
