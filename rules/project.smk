# project: activations x trait vectors -> scores. Never runs a model.


rule project:
    input:
        activations=rules.capture.output.activations,
        vectors=vector_files("vectors.safetensors"),
        sidecars=vector_files("vectors.json"),
    output:
        scores=f"{R}/projections/{{variant}}/{{pset}}/shard-{{shard}}.parquet",
        tokens=f"{R}/projections/{{variant}}/{{pset}}/shard-{{shard}}.tokens.parquet",
    params:
        traits=TRAITS,
        project=CFG["project"],
        n_layers=lambda w: CFG["_dims"][w.variant][0],
        seed=SEED,
    log:
        f"{R}/logs/project/{{variant}}/{{pset}}/shard-{{shard}}.log",
    script:
        "../workflow/scripts/project.py"
