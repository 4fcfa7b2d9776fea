# extract: contrastive activations per trait (model job), then vectors per layer (CPU job).


rule capture_trait:
    input:
        prompts=L.trait_prompts(),
        model=lambda w: model_inputs(w.variant),
    output:
        **L.trait_capture(),
    params:
        variant=lambda w: S.variants[w.variant],
        model_files=lambda w: MODEL_FILES[w.variant],
        job=lambda w: S.trait_capture_job(trait_of(w)),
        cache_dir=L.cache("capture"),
        special_tokens=S.config["checks"]["special_tokens"],
    log:
        L.log("capture_trait", "{variant}", "{category}", "{trait}"),
    benchmark:
        L.benchmark("capture_trait", "{variant}", "{category}", "{trait}")
    threads: variant_threads
    resources:
        **MODEL_JOB,
    conda:
        ENV
    script:
        "../workflow/scripts/capture.py"


rule judge_trait:
    input:
        responses=L.trait_capture()["responses"],
        table=L.trait_prompts(),
        judge=judge_inputs(),
    output:
        L.trait_judged(),
    params:
        trait=trait_of,
        description=lambda w: trait_description(trait_of(w), S.traits[trait_of(w)]),
        judge=S.judge,
        judge_cache=L.cache("judge"),
        filter=S.extract.filter,
    log:
        L.log("judge_trait", "{variant}", "{category}", "{trait}"),
    benchmark:
        L.benchmark("judge_trait", "{variant}", "{category}", "{trait}")
    conda:
        ENV
    script:
        "../workflow/scripts/judge_trait.py"


rule extract_vectors:
    input:
        activations=L.trait_capture()["activations"],
        table=L.trait_prompts(),
        judged=trait_judged_files,
    output:
        vectors=L.vector_files()["vectors"],
        sidecar=L.auc_sidecar() if S.extract.steering_layer_choice else L.vector_files()["sidecar"],
        metrics=L.vector_files()["metrics"],
    params:
        trait=trait_of,
        model=lambda w: S.variants[w.variant].model,
        job=S.extract_job(),
        layers=S.extract_layers(),
        position=lambda w: S.traits[trait_of(w)].position,
        seed=S.seed,
    log:
        L.log("extract_vectors", "{variant}", "{category}", "{trait}"),
    benchmark:
        L.benchmark("extract_vectors", "{variant}", "{category}", "{trait}")
    conda:
        ENV
    script:
        "../workflow/scripts/extract_vectors.py"


if S.extract.steering_layer_choice:

    rule steer_layer_choice:
        input:
            vectors=L.vector_files()["vectors"],
            sidecar=L.auc_sidecar(),
            activations=L.trait_capture()["activations"],
            table=L.trait_prompts(),
            model=lambda w: model_inputs(w.variant),
            judge=judge_inputs(),
        output:
            **reported(L.layer_choice(), "Extraction", "layer choice by steering",
                       {"trait": "{category}/{trait}", "variant": "{variant}"}, figure="layer_choice"),
        params:
            trait=trait_of,
            variant=lambda w: S.variants[w.variant],
            model_files=lambda w: MODEL_FILES[w.variant],
            trait_spec=lambda w: S.traits[trait_of(w)],
            choice=S.extract.steering_layer_choice,
            judge=S.judge,
            judge_cache=L.cache("judge"),
            seed=S.seed,
        log:
            L.log("steer_layer_choice", "{variant}", "{category}", "{trait}"),
        benchmark:
            L.benchmark("steer_layer_choice", "{variant}", "{category}", "{trait}")
        threads: variant_threads
        resources:
            **MODEL_JOB,
        conda:
            ENV
        script:
            "../workflow/scripts/steer_layer_choice.py"

    rule choose_layer:
        input:
            sidecar=L.auc_sidecar(),
            table=L.layer_choice()["table"],
        output:
            L.vector_files()["sidecar"],
        params:
            choice=S.extract.steering_layer_choice,
            judge=S.judge.model,
        log:
            L.log("choose_layer", "{variant}", "{category}", "{trait}"),
        benchmark:
            L.benchmark("choose_layer", "{variant}", "{category}", "{trait}")
        conda:
            ENV
        script:
            "../workflow/scripts/choose_layer.py"
