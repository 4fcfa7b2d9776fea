# extract: contrastive activations per trait (model job), then vectors per layer (CPU job).


def trait_key(w):
    return f"{w.category}/{w.trait}"


rule capture_trait:
    input:
        prompts=f"{R}/prompts/traits/{{category}}/{{trait}}.parquet",
        model=lambda w: model_inputs(w.variant),
    output:
        activations=f"{R}/extract/{{variant}}/{{category}}/{{trait}}/activations.safetensors",
        responses=f"{R}/extract/{{variant}}/{{category}}/{{trait}}/responses.parquet",
    params:
        variant_name=lambda w: w.variant,
        variant=lambda w: CFG["variants"][w.variant],
        capture={**CAPTURE, "batch_size": CFG["extract"]["batch_size"]},
        layers=extract_layers(CFG),
        positions=lambda w: ["response"] if trait_position(CFG, trait_key(w)) == "response_mean" else [trait_position(CFG, trait_key(w))],
        generate=lambda w: trait_position(CFG, trait_key(w)) == "response_mean",
        max_new_tokens=CFG["extract"]["max_new_tokens"],
        shard=None,
        label=lambda w: f"extract {w.variant} {trait_key(w)}",
        cache_dir=f"{R}/cache/capture",
        seed=SEED,
    log:
        f"{R}/logs/capture_trait/{{variant}}/{{category}}/{{trait}}.log",
    threads: model_threads
    resources:
        **MODEL_JOB,
    script:
        "../workflow/scripts/capture.py"


rule extract_vectors:
    input:
        activations=rules.capture_trait.output.activations,
        table=f"{R}/prompts/traits/{{category}}/{{trait}}.parquet",
    output:
        vectors=f"{R}/vectors/{{variant}}/{{category}}/{{trait}}/vectors.safetensors",
        sidecar=f"{R}/vectors/{{variant}}/{{category}}/{{trait}}/vectors.json",
        metrics=f"{R}/vectors/{{variant}}/{{category}}/{{trait}}/metrics.parquet",
    params:
        trait=trait_key,
        variant_name=lambda w: w.variant,
        model=lambda w: CFG["variants"][w.variant]["model"],
        extract=CFG["extract"],
        layers=extract_layers(CFG),
        position=lambda w: trait_position(CFG, trait_key(w)),
        seed=SEED,
    log:
        f"{R}/logs/extract_vectors/{{variant}}/{{category}}/{{trait}}.log",
    script:
        "../workflow/scripts/extract_vectors.py"
