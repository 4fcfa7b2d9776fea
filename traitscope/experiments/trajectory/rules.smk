# trajectory: misalignment while training. Each checkpoint of a finetune (its variants <variant>_step<k>) answers the
# test prompts; the answers are judged, and projected onto the traits and the finished organism's direction.
TR = S.experiment("trajectory")
TR_SET = S.trajectory
TR_STEPS = TR.steps(S, TR_SET)
TR_VARIANTS = [v for _, v in TR_STEPS]


rule trajectory_judge:
    input:
        responses=lambda w: shards(L.responses, [w.variant], [TR_SET.test]),
        prompts=L.prompts(TR_SET.test),
        judge=judge_inputs(),
    output:
        table=TR.judged(L),
    params:
        n=TR_SET.n_generations,
        judge=S.judge,
        judge_cache=L.cache("judge"),
    wildcard_constraints:
        variant=set_pattern(TR_VARIANTS),
    log:
        L.log("trajectory_judge", "{variant}"),
    benchmark:
        L.benchmark("trajectory_judge", "{variant}")
    conda:
        ENV
    script:
        "scripts/trajectory_judge.py"


rule trajectory:
    input:
        base=shards(L.activations, [TR_SET.base], [TR_SET.train]),
        finetuned=shards(L.activations, [TR_SET.finetuned], [TR_SET.train]),
        test=shards(L.activations, TR_VARIANTS, [TR_SET.test]),
        judged=[TR.judged(L, v) for v in TR_VARIANTS],
        adapter=L.adapter(S.variants[TR_SET.finetuned].finetune),
        vectors=vector_files("vectors"),
        sidecars=vector_files("sidecar"),
    output:
        **reported(TR.files(L), TR.title, figure="trajectory", json="trajectory_json"),
    params:
        settings=TR.params(TR_SET, "trajectory"),
        steps=TR_STEPS,
        layers=TR.layers(S, TR_SET),
        seed=S.seed,
    log:
        L.log("trajectory"),
    benchmark:
        L.benchmark("trajectory")
    conda:
        ENV
    script:
        "scripts/trajectory.py"
