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
        baseline=baseline_job,
        n_layers=variant_n_layers,
        mode=projection_mode,
    log:
        L.log("project", "{variant}", "{pset}"),
    resources:
        mem_mb=project_mem_mb,
        runtime=project_runtime,
    conda:
        ENV
    script:
        "../workflow/scripts/project.py"
