# finetune: LoRA adapters from chat data. A variant with `finetune: <name>` is the base variant's
# model plus this adapter, so capture, project and analyze run on it unchanged; one with `checkpoint: <k>` too
# (finetune.<name>.checkpoints adds them), with the adapter as it was after k steps.


rule prep_finetune_data:
    input:
        finetune_data_files,
    output:
        L.finetune_data(),
    params:
        spec=lambda w: S.finetune[w.ft],
    log:
        L.log("prep_finetune_data", "{ft}"),
    benchmark:
        L.benchmark("prep_finetune_data", "{ft}")
    conda:
        ENV
    script:
        "../workflow/scripts/prep_finetune_data.py"


rule finetune:
    input:
        data=L.finetune_data(),
        model=lambda w: model_inputs(S.finetune[w.ft].base),
    output:
        adapter=directory(L.adapter()),
        **reported(L.finetune_files(), "Finetuning", "{ft}", {"finetune": "{ft}"}, figure="finetune_loss"),
    params:
        base=lambda w: S.variants[S.finetune[w.ft].base],
        model_files=lambda w: MODEL_FILES[S.finetune[w.ft].base],
        spec=lambda w: S.finetune[w.ft],
        checkpoint_dir=L.cache("finetune"),
    log:
        L.log("finetune", "{ft}"),
    benchmark:
        L.benchmark("finetune", "{ft}")
    threads: finetune_threads
    resources:
        **FINETUNE_JOB,
    conda:
        ENV
    script:
        "../workflow/scripts/finetune.py"


rule finetune_checkpoint:
    input:
        final=L.adapter(),
        data=L.finetune_data(),
        model=lambda w: model_inputs(S.finetune[w.ft].base),
    output:
        adapter=directory(L.checkpoint_adapter()),
    params:
        base=lambda w: S.variants[S.finetune[w.ft].base],
        model_files=lambda w: MODEL_FILES[S.finetune[w.ft].base],
        spec=lambda w: S.finetune[w.ft],
        checkpoint_dir=L.cache("finetune"),
    wildcard_constraints:
        step=r"\d+",
    log:
        L.log("finetune_checkpoint", "{ft}", "step{step}"),
    benchmark:
        L.benchmark("finetune_checkpoint", "{ft}", "step{step}")
    threads: finetune_threads
    resources:
        **FINETUNE_JOB,
    conda:
        ENV
    script:
        "../workflow/scripts/finetune_checkpoint.py"
