# project: activations x trait vectors -> scores, one job per (variant, prompt set) over all its shards (or, for
# capture.stream sets, the gathering of the scores the capture jobs wrote). Never runs a model.


rule project:
    input:
        unpack(projection_inputs),
    output:
        scores=L.scores(),
        tokens=L.token_scores(),
        baseline=L.baseline(),
    params:
        project=S.project,
        baseline=lambda w: S.baseline_job(w.pset),
        n_layers=lambda w: S.n_layers(w.variant),
        mode=lambda w: "stream" if S.streamed(w.pset) else "two-step",
    log:
        L.log("project", "{variant}", "{pset}"),
    benchmark:
        L.benchmark("project", "{variant}", "{pset}")
    resources:
        mem_mb=project_mem_mb,
        runtime=lambda w: project_job_resources(S, w.variant, w.pset)["runtime"],
    conda:
        ENV
    script:
        "../workflow/scripts/project.py"
