# prefill_attack: harmful/benign prompts x compliance prefill/none; is harm still represented under forced compliance?
PA = S.experiment("prefill_attack")
PA_SET = S.prefill_attack


rule prefill_attack:
    input:
        **{c: per_set(L.token_scores, [PA_SET.variant], [s]) for c, s in PA_SET.conditions().items()},
        prompts=[L.prompts(s) for s in PA_SET.conditions().values()],
        baselines=[L.baseline(PA_SET.variant, s) for s in PA_SET.conditions().values()],
        sidecars=vector_files("sidecar"),
    output:
        **reported(PA.files(L), PA.title, grid="prefill_grid", divergence="prefill_divergence", json="prefill_json"),
    params:
        prefill=PA_SET,
        seed=S.seed,
    log:
        L.log("prefill_attack"),
    benchmark:
        L.benchmark("prefill_attack")
    conda:
        ENV
    script:
        "scripts/prefill_attack.py"
