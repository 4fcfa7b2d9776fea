# shared_directions: do finetunes on different data share one direction? Each organism's last-token direction against
# the base, their cosines per layer; each direction ablated in every organism and added to the base, judged.
SD = S.experiment("shared_directions")
SD_SET = S.shared_directions
SD_FILES = SD.direction_files(L)


rule shared_directions:
    input:
        base=shards(L.activations, [SD_SET.base], [SD_SET.train]),
        organisms=shards(L.activations, SD.finetuned(SD_SET), [SD_SET.train]),
    output:
        **reported(SD_FILES, SD.title, figure="shared_directions_cosines", json="shared_directions_json"),
    params:
        settings=SD.params(SD_SET, "shared_directions"),
        layers=SD.layers(S, SD_SET),
        seed=S.seed,
    log:
        L.log("shared_directions"),
    benchmark:
        L.benchmark("shared_directions")
    conda:
        ENV
    script:
        "scripts/shared_directions.py"


rule shared_directions_answers:
    input:
        directions=SD_FILES["directions"],
        cosines=SD_FILES["json"],
        prompts=L.prompts(SD_SET.test),
        model=lambda w: model_inputs(w.variant),
        judge=judge_inputs(),
    output:
        table=SD.answers(L),
    params:
        settings=SD.params(SD_SET, "shared_directions_answers"),
        variant=lambda w: S.variants[w.variant],
        model_files=lambda w: MODEL_FILES[w.variant],
        judge=S.judge,
        judge_cache=L.cache("judge"),
        seed=S.seed,
    wildcard_constraints:
        variant=set_pattern(SD.variants(SD_SET)),
    log:
        L.log("shared_directions_answers", "{variant}"),
    benchmark:
        L.benchmark("shared_directions_answers", "{variant}")
    threads: variant_threads
    resources:
        **MODEL_JOB,
    conda:
        ENV
    script:
        "scripts/shared_directions_answers.py"


rule shared_directions_transfer:
    input:
        answers=[SD.answers(L, v) for v in SD.variants(SD_SET)],
        cosines=SD_FILES["json"],
    output:
        **reported(SD.transfer_files(L), SD.title, figure="shared_directions_transfer", json="shared_directions_transfer_json"),
    params:
        settings=SD.params(SD_SET, "shared_directions_transfer"),
        seed=S.seed,
    log:
        L.log("shared_directions_transfer"),
    benchmark:
        L.benchmark("shared_directions_transfer")
    conda:
        ENV
    script:
        "scripts/shared_directions_transfer.py"
