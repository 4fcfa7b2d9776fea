# capture: one job per (variant, prompt set, shard) holding every requested layer.


rule capture:
    input:
        prompts=f"{R}/prompts/{{pset}}.parquet",
        model=lambda w: model_inputs(w.variant),
    output:
        activations=f"{R}/activations/{{variant}}/{{pset}}/shard-{{shard}}.safetensors",
        responses=f"{R}/activations/{{variant}}/{{pset}}/shard-{{shard}}.responses.parquet",
    params:
        variant_name=lambda w: w.variant,
        variant=lambda w: CFG["variants"][w.variant],
        capture=CAPTURE,
        layers=lambda w: capture_layers(CFG, w.variant),
        positions=CAPTURE["positions"],
        generate=None,
        max_new_tokens=None,
        shard=lambda w: int(w.shard),
        label=lambda w: f"capture {w.variant} {w.pset} shard {w.shard}",
        cache_dir=f"{R}/cache/capture",
        seed=SEED,
    log:
        f"{R}/logs/capture/{{variant}}/{{pset}}/shard-{{shard}}.log",
    threads: model_threads
    resources:
        **MODEL_JOB,
    script:
        "../workflow/scripts/capture.py"
