# analyze: tables, JSON and figures; results/all is the provenance manifest of everything.


rule extraction_summary:
    input:
        metrics=vector_files("metrics"),
        sidecars=vector_files("sidecar"),
    output:
        **L.extraction_summary(),
    log:
        L.log("extraction_summary"),
    conda:
        ENV
    script:
        "../workflow/scripts/extraction_summary.py"


if S.harm_check:

    rule harm_check:
        input:
            vectors=vector_files("vectors", [S.harm_check.trait])[0],
            sidecar=vector_files("sidecar", [S.harm_check.trait])[0],
            harmful=shards(L.activations, [S.extract.variant], [S.harm_check.harmful]),
            harmless=shards(L.activations, [S.extract.variant], [S.harm_check.harmless]),
        output:
            **L.harm_check(),
        params:
            check=S.harm_check,
            seed=S.seed,
        log:
            L.log("harm_check"),
        conda:
            ENV
        script:
            "../workflow/scripts/harm_check.py"


rule trait_scores:
    input:
        scores=captured(L.scores),
        sidecars=vector_files("sidecar"),
    output:
        **L.trait_scores(),
    params:
        pairs=captured(shard_variant_set),
        method=S.project.methods[0],
    log:
        L.log("trait_scores"),
    conda:
        ENV
    script:
        "../workflow/scripts/trait_scores.py"


rule manifest:
    input:
        analysis_targets(),
        prompts=[L.prompts(s) for s in S.used_prompt_sets()],
        responses=[f for _, f in captured_responses()],
    output:
        L.manifest(),
    params:
        config=S.config,
        overlaps=S.overlaps,
        captured=[label for label, _ in captured_responses()],
    log:
        L.log("manifest"),
    conda:
        ENV
    script:
        "../workflow/scripts/manifest.py"
