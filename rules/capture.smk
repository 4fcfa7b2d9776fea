# capture: one job per (variant, prompt set, shard) holding every requested layer. With capture.stream, the sets
# whose activations no analysis reads are projected inside the job instead (capture_stream): scores only.


rule capture:
    input:
        prompts=L.prompts(),
        model=lambda w: model_inputs(w.variant),
    output:
        activations=L.activations(),
        responses=L.responses(),
    wildcard_constraints:
        pset=set_pattern(TWO_STEP_SETS),
    params:
        variant=lambda w: S.variants[w.variant],
        model_files=lambda w: MODEL_FILES[w.variant],
        job=lambda w: S.capture_job(w.variant),
        cache_dir=L.cache("capture"),
        special_tokens=S.config["checks"]["special_tokens"],
    log:
        L.log("capture", "{variant}", "{pset}", "shard-{shard}"),
    benchmark:
        L.benchmark("capture", "{variant}", "{pset}", "shard-{shard}")
    threads: variant_threads
    resources:
        **MODEL_JOB,
    conda:
        ENV
    script:
        "../workflow/scripts/capture.py"


if STREAM_SETS:

    rule capture_stream:
        input:
            prompts=L.prompts(),
            model=lambda w: model_inputs(w.variant),
            vectors=vector_files("vectors"),
            sidecars=vector_files("sidecar"),
        output:
            scores=L.stream_scores(),
            tokens=L.stream_token_scores(),
            baseline=L.stream_baseline(),
            responses=L.responses(),
        wildcard_constraints:
            pset=set_pattern(STREAM_SETS),
        params:
            variant=lambda w: S.variants[w.variant],
            model_files=lambda w: MODEL_FILES[w.variant],
            job=lambda w: S.capture_job(w.variant),
            project=S.project,
            baseline=lambda w: S.baseline_job(w.pset),
            n_layers=lambda w: S.n_layers(w.variant),
            cache_dir=L.cache("capture"),
            special_tokens=S.config["checks"]["special_tokens"],
        log:
            L.log("capture", "{variant}", "{pset}", "shard-{shard}"),
        benchmark:
            L.benchmark("capture", "{variant}", "{pset}", "shard-{shard}")
        threads: variant_threads
        resources:
            **MODEL_JOB,
        conda:
            ENV
        script:
            "../workflow/scripts/capture.py"
