# emergent_misalignment: does a variant score higher than the base on the same benign prompts and response tokens?
EM = S.experiment("emergent_misalignment")
EM_SET = S.emergent_misalignment


rule emergent_misalignment:
    input:
        base=per_set(L.scores, [EM_SET.base], [EM_SET.prompt_set]),
        variant=per_set(L.scores, [EM_SET.variant], [EM_SET.prompt_set]),
        prompts=L.prompts(EM_SET.prompt_set),
        sidecars=vector_files("sidecar"),
        # the positive control (planted effects): each trait's unit vectors and the activation norm at its layer
        vectors=vector_files("vectors"),
        trait_acts=[L.trait_capture(S.extract.variant, t)["activations"] for t in TRAITS],
        # the control: random-direction scores of both variants on the set (none when project.random_directions is 0)
        baselines=per_set(L.baseline, [EM_SET.base, EM_SET.variant], [EM_SET.prompt_set])
        if S.project.random_directions
        else [],
    output:
        **reported(EM.files(L), EM.title, figure="emergent_misalignment", json="emergent_misalignment_json"),
    params:
        settings=EM_SET,
        seed=S.seed,
    log:
        L.log("emergent_misalignment"),
    benchmark:
        L.benchmark("emergent_misalignment")
    conda:
        ENV
    script:
        "scripts/emergent_misalignment.py"
