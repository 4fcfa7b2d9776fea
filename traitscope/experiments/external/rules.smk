# external: do trait scores predict harm per category of an external dataset (BeaverTails, HarmBench, AdvBench)?
EXT = S.experiment("external")
EXT_SET = S.external


rule external:
    input:
        scores=lambda w: per_set(L.scores, [EXT_SET.variant], EXT_SET.datasets[w.dataset].prompt_sets),
        baselines=lambda w: per_set(L.baseline, [EXT_SET.variant], EXT_SET.datasets[w.dataset].prompt_sets),
        prompts=lambda w: [L.prompts(s) for s in EXT_SET.datasets[w.dataset].prompt_sets],
        sidecars=vector_files("sidecar"),
    output:
        **reported(EXT.files(L), EXT.title, "{dataset}", {"dataset": "{dataset}"}, figure="external",
                   json="external_json", failures="external_failures"),
    params:
        external=EXT.params(EXT_SET, "external"),
        dataset=lambda w: EXT_SET.datasets[w.dataset],
        seed=S.seed,
    log:
        L.log("external", "{dataset}"),
    benchmark:
        L.benchmark("external", "{dataset}")
    conda:
        ENV
    script:
        "scripts/external.py"
