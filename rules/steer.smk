# steer: coefficient sweeps under steering, and CMA-ES optimisation of steering vectors, both judged.


if S.steering:

    rule steering_sweep:
        input:
            unpack(steering_inputs),
            prompts=L.prompts(S.steering.prompt_set),
        output:
            **reported(L.steering_sweep(), "Steering and CMA-ES", "steering sweeps",
                       {"trait": "{category}/{trait}", "variant": "{variant}"}, figure="steering_sweep"),
        params:
            trait=trait_of,
            variant=variant_spec,
            model_files=variant_files_key,
            trait_spec=trait_spec,
            steering=S.steering,
            n_layers=variant_n_layers,
            judge=S.judge,
            judge_cache=L.cache("judge"),
            seed=S.seed,
        log:
            L.log("steering_sweep", "{variant}", "{category}", "{trait}"),
        threads: variant_threads
        resources:
            **MODEL_JOB,
        conda:
            ENV
        script:
            "../workflow/scripts/steering_sweep.py"


if S.optimize:

    rule optimize_vector:
        input:
            unpack(steering_inputs),
            prompts=L.prompts(S.optimize.prompt_set),
        output:
            **L.optimized(),
        params:
            trait=trait_of,
            variant=variant_spec,
            model_files=variant_files_key,
            trait_spec=trait_spec,
            optimize=S.optimize,
            judge=S.judge,
            judge_cache=L.cache("judge"),
            checkpoint_dir=L.cache("optimize"),
            seed=S.seed,
        log:
            L.log("optimize_vector", "{variant}", "{category}", "{trait}"),
        threads: variant_threads
        resources:
            **MODEL_JOB,
        conda:
            ENV
        script:
            "../workflow/scripts/optimize_vector.py"

    rule extraction_gap:
        input:
            sidecars=[L.optimized(S.extract.variant, t)["sidecar"] for t in S.optimize.traits],
            histories=[L.optimized(S.extract.variant, t)["history"] for t in S.optimize.traits],
        output:
            **reported(L.extraction_gap(), "Steering and CMA-ES", "CMA-ES", figure="extraction_gap",
                       json="extraction_gap_json"),
        log:
            L.log("extraction_gap"),
        conda:
            ENV
        script:
            "../workflow/scripts/extraction_gap.py"
