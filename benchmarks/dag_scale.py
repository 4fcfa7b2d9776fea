"""Jobs, dry-run time and disk of a full-scale study: 4 variants of a 70B-shaped model x 330K prompts x 6 traits x
80 layers, two-step (activations kept, then projected) and stream-through (capture.stream: scores only).

Builds the study in a temporary folder (model folders hold only a config.json with the 70B shape; the prompt sets
are local parquet files, 330,000 prompts in all, in shards of 10,000 by default: a 70B capture job of 10,000 prompts
runs for about an hour, long enough that loading 133 GB of weights is a small part of it), then times
`snakemake -n results/all` in each mode and prints the jobs per rule, the jobs a SLURM run submits (every job but
the local rule `all`, which `results/all` does not plan), the seconds, and the bytes capture and project write per prompt and in total (the start-up
budget of traitscope.workflow.budget).

    python benchmarks/dag_scale.py [--prompts 330000] [--shard-size 10000]
    python benchmarks/dag_scale.py --short          # seconds, a small study of the same shape (CI)
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[1]


def build(root: Path, n_prompts: int, shard_size: int) -> Path:
    shape = {"model_type": "llama", "num_hidden_layers": 80, "hidden_size": 8192, "vocab_size": 128256}
    variants = {}
    for name in ("base", "em_insecure", "backdoor"):
        folder = root / "models" / name
        folder.mkdir(parents=True)
        (folder / "config.json").write_text(json.dumps(shape))
        variants[name] = {"model": str(folder), "dtype": "bfloat16", "device_map": "auto"}
    variants["em_4bit"] = {**variants["em_insecure"], "quantization": "4bit"}
    sizes = {
        "beavertails": int(n_prompts * 0.9),
        "harmbench": int(n_prompts * 0.03),
        "em_questions": n_prompts - int(n_prompts * 0.9) - int(n_prompts * 0.03),
    }
    prompt_sets = {
        "harmful_extract": {"source": "builtin", "name": "harmful", "split": "extract"},
        "benign_extract": {"source": "builtin", "name": "benign", "split": "extract"},
    }
    for name, n in sizes.items():
        path = root / f"{name}.parquet"
        pd.DataFrame(
            {"prompt": [f"{name} prompt number {i}" for i in range(n)], "category": [f"c{i % 14}" for i in range(n)]}
        ).to_parquet(path)
        prompt_sets[name] = {"source": "local", "path": str(path), "shard_size": shard_size}
    traits = {
        t: {"source": "builtin"}
        for t in ("safety/evil", "safety/harm", "safety/refusal", "safety/deception", "alignment/sycophancy")
    }
    traits["safety/harmful_instruction"] = {
        "source": "contrast",
        "pos": "harmful_extract",
        "neg": "benign_extract",
        "position": "last",
    }
    config = {
        "variants": variants,
        "traits": traits,
        "prompt_sets": prompt_sets,
        "extract": {"variant": "base", "layers": "all"},
        "capture": {"variants": list(variants), "prompt_sets": list(sizes), "layers": "all"},
        "project": {"layers": "best"},
    }
    cfg = root / "config.yaml"
    cfg.write_text(yaml.safe_dump(config))
    return cfg


def dry_run(root: Path, cfg: Path) -> tuple[dict[str, int], float, str]:
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "results/all",
        "-s",
        str(REPO / "Snakefile"),
        "-d",
        str(root),
        "-n",
        "--quiet",
        "rules",
        "--configfile",
        str(cfg),
    ]
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - t
    if proc.returncode != 0:
        sys.exit(proc.stderr[-3000:])
    out = proc.stdout + proc.stderr
    table = out.split("Job stats:")[1].split("total")[0]
    jobs = {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M)}
    return jobs, seconds, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prompts", type=int, default=330_000)
    ap.add_argument("--shard-size", type=int, default=10_000)
    ap.add_argument("--short", action="store_true", help="seconds: 6,600 prompts in shards of 2,000 (CI)")
    args = ap.parse_args()
    if args.short:
        args.prompts, args.shard_size = 6_600, 2_000
    from traitscope.study import load_config
    from traitscope.workflow.budget import human, study_budget

    print(
        f"full-scale study: 4 variants (70B shape: 80 layers, hidden 8192), {args.prompts} prompts in shards of "
        f"{args.shard_size}, 6 traits, capture and extraction at all 80 layers, positions last, mean and response "
        "(32 new tokens), project at each trait's best layer\n"
    )
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        cfg = build(root, args.prompts, args.shard_size)
        for mode in ("two-step", "stream"):
            config = yaml.safe_load(cfg.read_text())
            config["capture"]["stream"] = mode == "stream"
            cfg.write_text(yaml.safe_dump(config))
            jobs, seconds, _ = dry_run(root, cfg)
            budgets = study_budget(load_config(config, base_dir=root))
            rows = sum(b.rows for b in budgets)
            written = sum(b.written for b in budgets)
            submitted = sum(n for rule, n in jobs.items() if rule != "all")
            print(f"== {mode}: " + ", ".join(f"{rule} {n}" for rule, n in jobs.items()))
            print(f"   jobs submitted to SLURM: {submitted} (every job of the plan; the rule `all` would run locally)")
            print(
                f"   snakemake -n results/all: {seconds:.1f} s (the whole command: Python start-up, config "
                "validation, DAG)"
            )
            print(
                f"   written per prompt: {human(written / rows)} (activations "
                f"{human(sum(b.rows * b.activation_bytes_per_prompt for b in budgets if not b.streamed) / rows)}, "
                f"scores {human(sum(b.rows * b.score_bytes_per_prompt for b in budgets) / rows)}); "
                f"in total {human(written)} for {rows} (variant, prompt) pairs\n"
            )


if __name__ == "__main__":
    main()
