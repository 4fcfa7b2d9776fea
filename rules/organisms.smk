# organisms: a finetuned model organism (directions, detection, ablation) and backdoor detection.

ORG = CFG.get("organism")
BACKDOOR = CFG.get("backdoor")


if ORG:
    ORG_DIR = f"{R}/organism/{ORG['finetuned']}"

    rule organism_directions:
        input:
            base_train=shard_paths(ACTIVATIONS + ".safetensors", [ORG["base"]], [ORG["train"]]),
            finetuned_train=shard_paths(ACTIVATIONS + ".safetensors", [ORG["finetuned"]], [ORG["train"]]),
            base_test=shard_paths(ACTIVATIONS + ".safetensors", [ORG["base"]], [ORG["test"]]),
            finetuned_test=shard_paths(ACTIVATIONS + ".safetensors", [ORG["finetuned"]], [ORG["test"]]),
        output:
            directions=f"{ORG_DIR}/directions.safetensors",
            table=f"{ORG_DIR}/detection.parquet",
            json=f"{ORG_DIR}/detection.json",
            figure=f"{ORG_DIR}/detection_auc.png",
        params:
            organism=ORG,
            layers=parse_layers(ORG["layers"], CFG["_dims"][ORG["base"]][0], "organism.layers"),
            seed=SEED,
        log:
            f"{R}/logs/organism_directions.log",
        script:
            "../workflow/scripts/organism_directions.py"

    org_threads, ORG_JOB = model_job(lambda w: ORG["finetuned"])

    rule organism_ablation:
        input:
            directions=rules.organism_directions.output.directions,
            detection=rules.organism_directions.output.json,
            prompts=f"{R}/prompts/{ORG['test']}.parquet",
            model=model_inputs(ORG["finetuned"]),
            judge=judge_inputs() if ORG["judge"] else [],
        output:
            table=f"{ORG_DIR}/ablation.parquet",
            markdown=f"{ORG_DIR}/ablation.md",
            json=f"{ORG_DIR}/ablation.json",
        params:
            organism=ORG,
            variant=CFG["variants"][ORG["finetuned"]],
            n_layers=CFG["_dims"][ORG["base"]][0],
            judge=JUDGE,
            judge_cache=f"{R}/cache/judge",
            seed=SEED,
        log:
            f"{R}/logs/organism_ablation.log",
        threads: org_threads
        resources:
            **ORG_JOB,
        script:
            "../workflow/scripts/organism_ablation.py"


if BACKDOOR:
    BD_VARIANTS = [BACKDOOR["variant"]] + ([BACKDOOR["baseline"]] if BACKDOOR["baseline"] else [])
    BD_DIR = f"{R}/backdoor/{BACKDOOR['variant']}"

    rule backdoor_detection:
        input:
            trigger=[shard_paths(PROJECTIONS + ".parquet", [v], [BACKDOOR["trigger"]]) for v in BD_VARIANTS],
            control=[shard_paths(PROJECTIONS + ".parquet", [v], [BACKDOOR["control"]]) for v in BD_VARIANTS],
            trigger_tokens=[shard_paths(PROJECTIONS + ".tokens.parquet", [v], [BACKDOOR["trigger"]]) for v in BD_VARIANTS],
            control_tokens=[shard_paths(PROJECTIONS + ".tokens.parquet", [v], [BACKDOOR["control"]]) for v in BD_VARIANTS],
            sidecars=vector_files("vectors.json"),
        output:
            json=f"{BD_DIR}/detection_auc.json",
            tokens=f"{BD_DIR}/token_auc.parquet",
            comparison=f"{BD_DIR}/trait_comparison.png",
            early=f"{BD_DIR}/early_detection_tokens.png",
        params:
            backdoor=BACKDOOR,
            variants=BD_VARIANTS,
            shards={"trigger": n_shards(BACKDOOR["trigger"]), "control": n_shards(BACKDOOR["control"])},
            seed=SEED,
        log:
            f"{R}/logs/backdoor_detection.log",
        script:
            "../workflow/scripts/backdoor_detection.py"


def organism_targets():
    out = []
    if ORG:
        out += [f"{ORG_DIR}/{f}" for f in ("detection.json", "detection_auc.png", "ablation.md", "ablation.json")]
    if BACKDOOR:
        out += [f"{BD_DIR}/{f}" for f in ("detection_auc.json", "trait_comparison.png", "early_detection_tokens.png")]
    for ft in FINETUNE:
        out += [f"{R}/finetune/{ft}/loss.png"]
    return out
