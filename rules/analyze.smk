# analyze: tables, JSON and figures; results/all is the provenance manifest of everything.


rule extraction_summary:
    input:
        metrics=vector_files("metrics"),
        sidecars=vector_files("sidecar"),
    output:
        **reported(L.extraction_summary(), "Extraction", figure="extraction_summary",
                   table_html="extraction_table"),
    log:
        L.log("extraction_summary"),
    benchmark:
        L.benchmark("extraction_summary")
    conda:
        ENV
    script:
        "../workflow/scripts/extraction_summary.py"


rule trait_scores:
    input:
        scores=captured(L.scores),
        sidecars=vector_files("sidecar"),
    output:
        **reported(L.trait_scores(), "Trait scores", figure="trait_scores", table_html="trait_scores_table"),
    params:
        pairs=captured(variant_set),
        method=S.project.methods[0],
    log:
        L.log("trait_scores"),
    benchmark:
        L.benchmark("trait_scores")
    conda:
        ENV
    script:
        "../workflow/scripts/trait_scores.py"


if viewer_enabled():

    rule token_viewer:
        input:
            tokens=projected(L.token_scores),
            prompts=[L.prompts(s) for s in PROJECTED_SETS],
            # the per-token control where the study keeps it: random directions' scores at every token
            baselines=[L.baseline(v, s) for v, s in S.projected_pairs() if S.baseline_job(s).per_token],
            sidecars=vector_files("sidecar"),
            models=[f for v in PROJECTED_VARIANTS for f in model_inputs(v)],
        output:
            **reported(L.viewer(), "Token viewer", page="token_viewer"),
        params:
            panels=projected(variant_set),
            banded=[(v, s) for v, s in S.projected_pairs() if S.baseline_job(s).per_token],
            prompt_sets=PROJECTED_SETS,
            variants={v: S.variants[v] for v in PROJECTED_VARIANTS},
            comparisons=comparisons_of(S),
            viewer=S.viewer,
            seed=S.seed,
        log:
            L.log("token_viewer"),
        benchmark:
            L.benchmark("token_viewer")
        conda:
            ENV
        script:
            "../workflow/scripts/token_viewer.py"


rule findings:
    input:
        analysis_targets(),
        intro=os.path.join(workflow.basedir, "workflow", "report", "workflow.rst"),
    output:
        **reported(L.findings(), "Findings", markdown="findings"),
    log:
        L.log("findings"),
    benchmark:
        L.benchmark("findings")
    conda:
        ENV
    script:
        "../workflow/scripts/findings.py"


rule manifest:
    input:
        analysis_targets(),
        findings=L.findings()["markdown"],
        prompts=[L.prompts(s) for s in S.used_prompt_sets()],
        responses=[f for _, f in captured_responses()],
    output:
        report(L.manifest(), caption="../workflow/report/manifest.rst", category=category("Provenance"),
               labels={"entry": "provenance manifest"}),
    params:
        config=S.config,
        overlaps=S.overlaps,
        captured=[label for label, _ in captured_responses()],
    log:
        L.log("manifest"),
    benchmark:
        L.benchmark("manifest")
    conda:
        ENV
    script:
        "../workflow/scripts/manifest.py"
