# experiments: research questions answered from projections (no model runs here).


if S.compare:

    rule variant_comparison:
        input:
            base=per_set(L.scores, [S.compare.base], [S.compare.prompt_set]),
            variant=per_set(L.scores, [S.compare.variant], [S.compare.prompt_set]),
            prompts=L.prompts(S.compare.prompt_set),
            sidecars=vector_files("sidecar"),
            baselines=compare_baselines(),
        output:
            **reported(L.variant_comparison(), "Emergent misalignment", figure="variant_comparison",
                       json="variant_comparison_json"),
        params:
            compare=S.compare,
            seed=S.seed,
        log:
            L.log("variant_comparison"),
        conda:
            ENV
        script:
            "../workflow/scripts/variant_comparison.py"


if S.external:

    rule external_dataset:
        input:
            scores=external_scores,
            baselines=external_baselines,
            prompts=external_prompts,
            sidecars=vector_files("sidecar"),
        output:
            **reported(L.external(), "External datasets", "{dataset}", {"dataset": "{dataset}"}, figure="external",
                       json="external_json", failures="external_failures"),
        params:
            external=S.external._replace(datasets={}),
            dataset=external_dataset,
            seed=S.seed,
        log:
            L.log("external", "{dataset}"),
        conda:
            ENV
        script:
            "../workflow/scripts/external_dataset.py"


if S.prefill_attack:

    rule prefill_attack:
        input:
            **{c: per_set(L.token_scores, [S.prefill_attack.variant], [s])
               for c, s in S.prefill_attack.conditions().items()},
            prompts=[L.prompts(s) for s in S.prefill_attack.conditions().values()],
            baselines=[L.baseline(S.prefill_attack.variant, s) for s in S.prefill_attack.conditions().values()],
            sidecars=vector_files("sidecar"),
        output:
            **reported(L.prefill_attack(), "Prefill attack", grid="prefill_grid", divergence="prefill_divergence",
                       json="prefill_json"),
        params:
            prefill=S.prefill_attack,
            seed=S.seed,
        log:
            L.log("prefill_attack"),
        conda:
            ENV
        script:
            "../workflow/scripts/prefill_attack.py"
