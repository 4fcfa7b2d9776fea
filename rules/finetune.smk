# finetune: LoRA adapters from chat data. A variant with `finetune: <name>` is the base variant's
# model plus this adapter, so capture, project and analyze run on it unchanged.


rule prep_finetune_data:
    input:
        finetune_data_files,
    output:
        L.finetune_data(),
    params:
        spec=finetune_spec,
    log:
        L.log("prep_finetune_data", "{ft}"),
    conda:
        ENV
    script:
        "../workflow/scripts/prep_finetune_data.py"


rule finetune:
    input:
        data=L.finetune_data(),
        model=finetune_base_files,
    output:
        adapter=directory(L.adapter()),
        **reported(L.finetune_files(), "Finetuning", "{ft}", {"finetune": "{ft}"}, figure="finetune_loss"),
    params:
        base=finetune_base_spec,
        model_files=finetune_base_files_key,
        spec=finetune_spec,
        checkpoint_dir=L.cache("finetune"),
    log:
        L.log("finetune", "{ft}"),
    threads: finetune_threads
    resources:
        **FINETUNE_JOB,
    conda:
        ENV
    script:
        "../workflow/scripts/finetune.py"
