"""Dry-run time of a full-scale study: 3 variants of a 70B-shaped model x 330K prompts x 6 traits x 80 layers.

Builds the study in a temporary folder (model folders hold only a config.json with the 70B shape; the
prompt sets are local parquet files, 330,000 prompts in all, split into shards of 2,000 by default), then times
`snakemake -n results/all` and prints the number of jobs and seconds.

    python benchmarks/dag_scale.py [--prompts 330000] [--shard-size 2000]
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
    sizes = {"beavertails": int(n_prompts * 0.9), "harmbench": int(n_prompts * 0.03),
             "em_questions": n_prompts - int(n_prompts * 0.9) - int(n_prompts * 0.03)}
    prompt_sets = {"harmful_extract": {"source": "builtin", "name": "harmful", "split": "extract"},
                   "benign_extract": {"source": "builtin", "name": "benign", "split": "extract"}}
    for name, n in sizes.items():
        path = root / f"{name}.parquet"
        pd.DataFrame({"prompt": [f"{name} prompt number {i}" for i in range(n)],
                      "category": [f"c{i % 14}" for i in range(n)]}).to_parquet(path)
        prompt_sets[name] = {"source": "local", "path": str(path), "shard_size": shard_size}
    traits = {t: {"source": "builtin"} for t in
              ("safety/evil", "safety/harm", "safety/refusal", "safety/deception", "alignment/sycophancy")}
    traits["safety/harmful_instruction"] = {"source": "contrast", "pos": "harmful_extract", "neg": "benign_extract",
                                            "position": "last"}
    config = {"variants": variants, "traits": traits, "prompt_sets": prompt_sets,
              "extract": {"variant": "base", "layers": "all"},
              "capture": {"variants": list(variants), "prompt_sets": list(sizes), "layers": "all"},
              "project": {"layers": "all"}}
    cfg = root / "config.yaml"
    cfg.write_text(yaml.safe_dump(config))
    return cfg


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prompts", type=int, default=330_000)
    ap.add_argument("--shard-size", type=int, default=2000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        cfg = build(root, args.prompts, args.shard_size)
        cmd = [sys.executable, "-m", "snakemake", "results/all", "-s", str(REPO / "Snakefile"), "-d", str(root), "-n",
               "--quiet", "rules", "--configfile", str(cfg)]
        t = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        seconds = time.perf_counter() - t
        if proc.returncode != 0:
            sys.exit(proc.stderr[-3000:])
        out = proc.stdout + proc.stderr
        total = re.search(r"^total\s+(\d+)$", out, re.M)
        print(out.split("Job stats:")[1].split("Reasons")[0].strip() if "Job stats:" in out else out[-2000:])
        print(f"\nfull-scale study: 4 variants (70B shape, 80 layers), {args.prompts} prompts in shards of "
              f"{args.shard_size}, 6 traits, all 80 layers")
        print(f"snakemake -n results/all: {total.group(1) if total else '?'} jobs, DAG built in {seconds:.1f} s "
              f"(wall time of the whole dry-run command, Python start-up and config validation included)")


if __name__ == "__main__":
    main()
