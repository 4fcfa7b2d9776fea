# steer: coefficient sweeps under steering, and CMA-ES optimisation of steering vectors, both judged.

STEERING = CFG.get("steering")
OPTIMIZE = CFG.get("optimize")
JUDGE = CFG["judge"]


def judge_inputs():
    name = embedded_name(JUDGE["offline_model"]) if JUDGE["model"].startswith("traitscope/") else None
    return [f"resources/models/{name}"] if name else []


# params both steering rules take
STEER_PARAMS = {
    "trait": lambda w: f"{w.category}/{w.trait}",
    "variant": lambda w: CFG["variants"][w.variant],
    "trait_spec": lambda w: CFG["traits"][f"{w.category}/{w.trait}"],
    "position": lambda w: trait_position(CFG, f"{w.category}/{w.trait}"),
    "judge": JUDGE,
    "judge_cache": f"{R}/cache/judge",
}


def steering_inputs(w):
    base = f"{R}/vectors/{w.variant}/{w.category}/{w.trait}"
    return {"vectors": f"{base}/vectors.safetensors", "sidecar": f"{base}/vectors.json",
            "activations": f"{R}/extract/{w.variant}/{w.category}/{w.trait}/activations.safetensors",
            "model": model_inputs(w.variant), "judge": judge_inputs()}


rule steering_sweep:
    input:
        unpack(steering_inputs),
        prompts=lambda w: f"{R}/prompts/{STEERING['prompt_set']}.parquet",
    output:
        table=f"{R}/steering/{{variant}}/{{category}}/{{trait}}/sweep.parquet",
        figure=f"{R}/steering/{{variant}}/{{category}}/{{trait}}/sweep.png",
    params:
        **STEER_PARAMS,
        steering=STEERING,
        n_layers=lambda w: CFG["_dims"][w.variant][0],
        seed=SEED,
    log:
        f"{R}/logs/steering_sweep/{{variant}}/{{category}}/{{trait}}.log",
    threads: model_threads
    resources:
        **MODEL_JOB,
    script:
        "../workflow/scripts/steering_sweep.py"


rule optimize_vector:
    input:
        unpack(steering_inputs),
        prompts=lambda w: f"{R}/prompts/{OPTIMIZE['prompt_set']}.parquet",
    output:
        vector=f"{R}/optimize/{{variant}}/{{category}}/{{trait}}/vector.safetensors",
        sidecar=f"{R}/optimize/{{variant}}/{{category}}/{{trait}}/vector.json",
        history=f"{R}/optimize/{{variant}}/{{category}}/{{trait}}/history.parquet",
    params:
        **STEER_PARAMS,
        optimize=OPTIMIZE,
        checkpoint_dir=f"{R}/cache/optimize",
        seed=SEED,
    log:
        f"{R}/logs/optimize_vector/{{variant}}/{{category}}/{{trait}}.log",
    threads: model_threads
    resources:
        **MODEL_JOB,
    script:
        "../workflow/scripts/optimize_vector.py"


def optimized(kind):
    return [f"{R}/optimize/{EXTRACT_VARIANT}/{t}/{kind}" for t in (OPTIMIZE or {}).get("traits", [])]


rule extraction_gap:
    input:
        sidecars=optimized("vector.json"),
        histories=optimized("history.parquet"),
    output:
        json=f"{R}/optimize/extraction_gap.json",
        figure=f"{R}/optimize/optimization_curves.png",
    log:
        f"{R}/logs/extraction_gap.log",
    script:
        "../workflow/scripts/extraction_gap.py"


def steer_targets():
    out = [f"{R}/steering/{EXTRACT_VARIANT}/{t}/sweep.png" for t in (STEERING or {}).get("traits", [])]
    if OPTIMIZE:
        out += [f"{R}/optimize/extraction_gap.json", f"{R}/optimize/optimization_curves.png"]
    return out
