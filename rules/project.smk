# project: activations x trait vectors -> scores. Never runs a model.


rule project:
    input:
        activations=L.activations(),
        vectors=vector_files("vectors"),
        sidecars=vector_files("sidecar"),
    output:
        scores=L.scores(),
        tokens=L.token_scores(),
    params:
        project=S.project,
        n_layers=variant_n_layers,
    log:
        L.log("project", "{variant}", "{pset}", "shard-{shard}"),
    conda:
        ENV
    script:
        "../workflow/scripts/project.py"
