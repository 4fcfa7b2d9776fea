# backdoor: trait scores of a backdoored variant on trigger vs control prompts, before any bad output.
BD = S.experiment("backdoor")
BD_SET = S.backdoor


rule backdoor:
    input:
        trigger=per_set(L.scores, BD_SET.variants(), [BD_SET.trigger]),
        control=per_set(L.scores, BD_SET.variants(), [BD_SET.control]),
        trigger_tokens=per_set(L.token_scores, BD_SET.variants(), [BD_SET.trigger]),
        control_tokens=per_set(L.token_scores, BD_SET.variants(), [BD_SET.control]),
        trigger_acts=shards(L.activations, BD_SET.variants(), [BD_SET.trigger]),
        control_acts=shards(L.activations, BD_SET.variants(), [BD_SET.control]),
        trigger_random=per_set(L.baseline, BD_SET.variants(), [BD_SET.trigger]),
        control_random=per_set(L.baseline, BD_SET.variants(), [BD_SET.control]),
        sidecars=vector_files("sidecar"),
        # the positive control (a planted trigger direction): the unit vectors and the activation norm at each layer
        vectors=vector_files("vectors"),
        trait_acts=[L.trait_capture(S.extract.variant, t)["activations"] for t in TRAITS],
    output:
        **reported(BD.files(L, BD_SET.variant), BD.title, comparison="backdoor_comparison", early="backdoor_early",
                   json="backdoor_json"),
    params:
        backdoor=BD_SET,
        seed=S.seed,
    log:
        L.log("backdoor"),
    benchmark:
        L.benchmark("backdoor")
    conda:
        ENV
    script:
        "scripts/backdoor.py"
