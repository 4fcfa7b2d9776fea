# prep: the embedded model, prompt sets and contrastive trait data, all in one parquet schema.


rule convert_embedded:
    output:
        directory(L.embedded_model()),
    log:
        L.embedded_log(),
    benchmark:
        L.benchmark("convert_embedded", "{name}", root="resources")
    wildcard_constraints:
        name="|".join(map(re.escape, EMBEDDED)),
    params:
        dtype=lambda w: CONVERT_DTYPE.get(w.name, "float32"),
    threads: 1  # numpy de-quantisation on one core: the other runs the prep jobs meanwhile
    resources:  # one tensor at a time (traitscope/core/gguf_convert.py): memory from its largest tensor
        mem_mb=lambda w: conversion_memory_mb(embedded_gguf_path(w.name)),
        disk_mb=lambda w: conversion_disk_mb(embedded_gguf_path(w.name), CONVERT_DTYPE.get(w.name, "float32")),
    conda:
        ENV
    script:
        "../workflow/scripts/convert_embedded.py"


rule convert_gguf:
    input:
        gguf=lambda w: GGUF_SOURCES[w.slug],
    output:
        directory(L.gguf_model()),
    log:
        L.gguf_log(),
    benchmark:
        L.benchmark("convert_gguf", "{slug}", root="resources")
    wildcard_constraints:
        slug="[A-Za-z0-9_.-]+",
    params:
        dtype=lambda w: CONVERT_DTYPE[w.slug],
    threads: 1  # numpy de-quantisation on one core: the other runs the prep jobs meanwhile
    resources:
        mem_mb=lambda w: conversion_memory_mb(Path(GGUF_SOURCES[w.slug])),
        disk_mb=lambda w: conversion_disk_mb(Path(GGUF_SOURCES[w.slug]), CONVERT_DTYPE[w.slug]),
    conda:
        ENV
    script:
        "../workflow/scripts/convert_gguf.py"


rule prep_prompts:
    input:
        unpack(prompt_set_inputs),
    output:
        L.prompts(),
    params:
        spec=lambda w: S.prompt_sets[w.pset],
        shards=lambda w: S.shard_count(w.pset),
        seed=S.seed,
    log:
        L.log("prep_prompts", "{pset}"),
    benchmark:
        L.benchmark("prep_prompts", "{pset}")
    conda:
        ENV
    script:
        "../workflow/scripts/prep_prompts.py"


rule prep_trait:
    input:
        unpack(trait_prompt_inputs),
    output:
        L.trait_prompts(),
    params:
        trait=trait_of,
        spec=lambda w: S.traits[trait_of(w)],
        seed=S.seed,
    log:
        L.log("prep_trait", "{category}", "{trait}"),
    benchmark:
        L.benchmark("prep_trait", "{category}", "{trait}")
    conda:
        ENV
    script:
        "../workflow/scripts/prep_trait.py"
