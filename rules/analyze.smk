# analyze: tables, JSON and figures; results/all is the provenance manifest of everything.

HARM = (CFG.get("checks") or {}).get("harm_separation")


rule extraction_summary:
    input:
        metrics=vector_files("metrics.parquet"),
        sidecars=vector_files("vectors.json"),
    output:
        table=f"{R}/extract/summary.parquet",
        figure=f"{R}/extract/summary.png",
    log:
        f"{R}/logs/extraction_summary.log",
    script:
        "../workflow/scripts/extraction_summary.py"


if HARM:

    rule harm_check:
        input:
            vectors=f"{R}/vectors/{EXTRACT_VARIANT}/{HARM['trait']}/vectors.safetensors",
            sidecar=f"{R}/vectors/{EXTRACT_VARIANT}/{HARM['trait']}/vectors.json",
            harmful=shard_paths(ACTIVATIONS + ".safetensors",
                                [EXTRACT_VARIANT], [HARM["harmful"]]),
            harmless=shard_paths(ACTIVATIONS + ".safetensors",
                                 [EXTRACT_VARIANT], [HARM["harmless"]]),
        output:
            json=f"{R}/checks/harm_separation.json",
            figure=f"{R}/checks/harm_separation.png",
        params:
            position=trait_position(CFG, HARM["trait"]),
            min_auc=HARM["min_auc"],
            harmful=HARM["harmful"],
            harmless=HARM["harmless"],
            seed=SEED,
        log:
            f"{R}/logs/harm_check.log",
        script:
            "../workflow/scripts/harm_check.py"


rule trait_scores:
    input:
        scores=shard_paths(PROJECTIONS + ".parquet"),
        sidecars=vector_files("vectors.json"),
    output:
        table=f"{R}/analysis/trait_scores.parquet",
        figure=f"{R}/analysis/trait_scores.png",
    params:
        pairs=[(v, s) for v in CAPTURE["variants"] for s in CAPTURE["prompt_sets"] for _ in range(n_shards(s))],
        method=CFG["project"]["methods"][0],
    log:
        f"{R}/logs/trait_scores.log",
    script:
        "../workflow/scripts/trait_scores.py"


rule manifest:
    input:
        rules.extraction_summary.output,
        rules.trait_scores.output,
        vector_files("vectors.safetensors"),
        vector_files("vectors.json"),
        [f"{R}/checks/harm_separation.json", f"{R}/checks/harm_separation.png"] if HARM else [],
        steer_targets(),
        organism_targets(),
        experiment_targets(),
    output:
        f"{R}/all",
    params:
        config={k: v for k, v in CFG.items() if not k.startswith("_")},
    log:
        f"{R}/logs/manifest.log",
    script:
        "../workflow/scripts/manifest.py"
