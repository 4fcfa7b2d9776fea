# adapter_probe: the singular directions of each LoRA update (B A) of a finetune against the trait vectors and the
# organism's direction, read from the adapter weights without running the model.
AP = S.experiment("adapter_probe")
# finetune -> the organism's direction file when the study's organism is that finetune's variant
AP_ORGANISM = (
    {S.variants[S.organism.finetuned].finetune: S.experiment("organism").directions_files(L, S.organism.finetuned)}
    if S.organism is not None and S.variants[S.organism.finetuned].finetune
    else {}
)


rule adapter_probe:
    input:
        adapter=lambda w: L.adapter(w.ft),
        vectors=vector_files("vectors"),
        sidecars=vector_files("sidecar"),
        organism=lambda w: [AP_ORGANISM[w.ft]["directions"]] if w.ft in AP_ORGANISM else [],
    output:
        **reported(AP.files(L), AP.title, "{ft}", {"finetune": "{ft}"}, figure="adapter_probe", json="adapter_probe_json"),
    params:
        probe=AP.params(S.adapter_probe, "adapter_probe"),
        seed=S.seed,
    log:
        L.log("adapter_probe", "{ft}"),
    benchmark:
        L.benchmark("adapter_probe", "{ft}")
    conda:
        ENV
    script:
        "scripts/adapter_probe.py"
