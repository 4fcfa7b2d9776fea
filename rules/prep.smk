# prep: the embedded model, prompt sets and contrastive trait data, all in one parquet schema.


rule convert_embedded:
    output:
        directory("resources/models/{name}"),
    log:
        "resources/logs/convert_embedded/{name}.log",
    threads: 2
    script:
        "../workflow/scripts/convert_embedded.py"


def prompt_set_inputs(w):
    spec = CFG["prompt_sets"][w.pset]
    if spec["source"] == "replay":  # the source set and the replayed variant's captured responses
        return {"source": f"{R}/prompts/{spec['prompt_set']}.parquet",
                "responses": shard_paths(ACTIVATIONS + ".responses.parquet",
                                         [spec["variant"]], [spec["prompt_set"]])}
    return {"files": local_prompt_file(w.pset)}


rule prep_prompts:
    input:
        unpack(prompt_set_inputs),
    output:
        f"{R}/prompts/{{pset}}.parquet",
    params:
        spec=lambda w: CFG["prompt_sets"][w.pset],
        shards=lambda w: n_shards(w.pset),
        seed=SEED,
    log:
        f"{R}/logs/prep_prompts/{{pset}}.log",
    script:
        "../workflow/scripts/prep_prompts.py"


def trait_prompt_inputs(w):
    spec = CFG["traits"][f"{w.category}/{w.trait}"]
    if spec["source"] != "contrast":
        return {}
    return {"pos": f"{R}/prompts/{spec['pos']}.parquet", "neg": f"{R}/prompts/{spec['neg']}.parquet"}


rule prep_trait:
    input:
        unpack(trait_prompt_inputs),
    output:
        f"{R}/prompts/traits/{{category}}/{{trait}}.parquet",
    params:
        trait=lambda w: f"{w.category}/{w.trait}",
        spec=lambda w: CFG["traits"][f"{w.category}/{w.trait}"],
        seed=SEED,
    log:
        f"{R}/logs/prep_trait/{{category}}/{{trait}}.log",
    script:
        "../workflow/scripts/prep_trait.py"
