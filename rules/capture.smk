# capture: one job per (variant, prompt set, shard) holding every requested layer.


rule capture:
    input:
        prompts=L.prompts(),
        model=variant_model_files,
    output:
        activations=L.activations(),
        responses=L.responses(),
    params:
        variant=variant_spec,
        job=capture_job,
        cache_dir=L.cache("capture"),
    log:
        L.log("capture", "{variant}", "{pset}", "shard-{shard}"),
    threads: variant_threads
    resources:
        **MODEL_JOB,
    conda:
        ENV
    script:
        "../workflow/scripts/capture.py"
