# finetune: LoRA adapters from chat data. A variant with `finetune: <name>` is the base variant's
# model plus this adapter, so capture, project and analyze run on it unchanged.

FINETUNE = CFG["finetune"]


def finetune_base(w):
    return FINETUNE[w.ft]["base"]


def finetune_seed(w):
    seed = FINETUNE[w.ft]["seed"]
    return SEED if seed is None else seed


ft_threads, FT_JOB = model_job(finetune_base)


rule prep_finetune_data:
    input:
        lambda w: [FINETUNE[w.ft]["data"]["path"]] if FINETUNE[w.ft]["data"]["source"] == "local" else [],
    output:
        f"{R}/finetune/{{ft}}/train.jsonl.gz",
    params:
        spec=lambda w: FINETUNE[w.ft]["data"],
        key=lambda w: f"finetune.{w.ft}.data",
        seed=finetune_seed,
    log:
        f"{R}/logs/prep_finetune_data/{{ft}}.log",
    script:
        "../workflow/scripts/prep_finetune_data.py"


rule finetune:
    input:
        data=rules.prep_finetune_data.output[0],
        model=lambda w: model_inputs(finetune_base(w)),
    output:
        adapter=directory(f"{R}/finetune/{{ft}}/adapter"),
        history=f"{R}/finetune/{{ft}}/loss.parquet",
        figure=f"{R}/finetune/{{ft}}/loss.png",
    params:
        name=lambda w: w.ft,
        base=lambda w: CFG["variants"][finetune_base(w)],
        settings=lambda w: FINETUNE[w.ft],
        checkpoint_dir=f"{R}/cache/finetune",
        seed=finetune_seed,
    log:
        f"{R}/logs/finetune/{{ft}}.log",
    threads: ft_threads
    resources:
        **FT_JOB,
    script:
        "../workflow/scripts/finetune.py"
