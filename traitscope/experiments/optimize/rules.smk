# optimize: CMA-ES search for a steering vector in a PCA subspace against the judge, from the extracted vector; the
# gap between extracted and optimised vectors on held-out prompts.
OPT = S.experiment("optimize")


rule optimize_vector:
    input:
        unpack(steering_inputs),
        prompts=L.prompts(S.optimize.prompt_set),
    output:
        **OPT.optimized(L),
    params:
        trait=trait_of,
        variant=lambda w: S.variants[w.variant],
        model_files=lambda w: MODEL_FILES[w.variant],
        trait_spec=lambda w: S.traits[trait_of(w)],
        optimize=S.optimize,
        judge=S.judge,
        judge_cache=L.cache("judge"),
        checkpoint_dir=L.cache("optimize"),
        seed=S.seed,
    log:
        L.log("optimize_vector", "{variant}", "{category}", "{trait}"),
    benchmark:
        L.benchmark("optimize_vector", "{variant}", "{category}", "{trait}")
    threads: variant_threads
    resources:
        **MODEL_JOB,
    conda:
        ENV
    script:
        "scripts/optimize_vector.py"


rule optimize_gap:
    input:
        sidecars=[OPT.optimized(L, S.extract.variant, t)["sidecar"] for t in S.optimize.traits],
        histories=[OPT.optimized(L, S.extract.variant, t)["history"] for t in S.optimize.traits],
    output:
        **reported(OPT.files(L), OPT.title, "CMA-ES", figure="optimize", json="optimize_json"),
    log:
        L.log("optimize_gap"),
    benchmark:
        L.benchmark("optimize_gap")
    conda:
        ENV
    script:
        "scripts/optimize_gap.py"
