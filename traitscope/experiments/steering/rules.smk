# steering: each trait's vector added at a range of coefficients, the steered answers judged (trait, coherence).
STEER = S.experiment("steering")


rule steering_sweep:
    input:
        unpack(steering_inputs),
        prompts=L.prompts(S.steering.prompt_set),
    output:
        **reported(STEER.files(L), STEER.title, "steering sweeps", {"trait": "{category}/{trait}", "variant": "{variant}"},
                   figure="steering_sweep"),
    params:
        trait=trait_of,
        variant=lambda w: S.variants[w.variant],
        model_files=lambda w: MODEL_FILES[w.variant],
        trait_spec=lambda w: S.traits[trait_of(w)],
        steering=S.steering,
        n_layers=lambda w: S.n_layers(w.variant),
        judge=S.judge,
        judge_cache=L.cache("judge"),
        seed=S.seed,
    log:
        L.log("steering_sweep", "{variant}", "{category}", "{trait}"),
    benchmark:
        L.benchmark("steering_sweep", "{variant}", "{category}", "{trait}")
    threads: variant_threads
    resources:
        **MODEL_JOB,
    conda:
        ENV
    script:
        "scripts/steering_sweep.py"
