# organism: a finetuned model organism against its base; directions from last-token activations, detection on
# held-out prompts, and ablation of the direction during generation (judged).
ORG = S.experiment("organism")
ORG_SET = S.organism
ORG_FILES = ORG.directions_files(L, ORG_SET.finetuned)


rule organism_directions:
    input:
        base_train=shards(L.activations, [ORG_SET.base], [ORG_SET.train]),
        finetuned_train=shards(L.activations, [ORG_SET.finetuned], [ORG_SET.train]),
        base_test=shards(L.activations, [ORG_SET.base], [ORG_SET.test]),
        finetuned_test=shards(L.activations, [ORG_SET.finetuned], [ORG_SET.test]),
    output:
        **reported(ORG_FILES, ORG.title, figure="organism_detection", json="organism_json"),
    params:
        organism=ORG_SET,
        layers=ORG.layers(S, ORG_SET),
        seed=S.seed,
    log:
        L.log("organism_directions"),
    benchmark:
        L.benchmark("organism_directions")
    conda:
        ENV
    script:
        "scripts/organism_directions.py"


rule organism_ablation:
    input:
        directions=ORG_FILES["directions"],
        detection=ORG_FILES["json"],
        prompts=L.prompts(ORG_SET.test),
        model=model_inputs(ORG_SET.finetuned),
        judge=judge_inputs() if ORG_SET.judge else [],
    output:
        **reported(ORG.ablation_files(L, ORG_SET.finetuned), ORG.title, markdown="organism_ablation"),
    params:
        organism=ORG_SET,
        variant=S.variants[ORG_SET.finetuned],
        model_files=MODEL_FILES[ORG_SET.finetuned],
        n_layers=S.n_layers(ORG_SET.base),
        judge=S.judge if ORG_SET.judge else None,
        judge_cache=L.cache("judge"),
        seed=S.seed,
    log:
        L.log("organism_ablation"),
    benchmark:
        L.benchmark("organism_ablation")
    threads: model_job(MODEL_RES, lambda w: ORG_SET.finetuned)[0]
    resources:
        **model_job(MODEL_RES, lambda w: ORG_SET.finetuned)[1],
    conda:
        ENV
    script:
        "scripts/organism_ablation.py"
