"""Trait vectors of a 4-bit (bitsandbytes NF4) model against the same model in float32, on the CPU.

Runs the extraction of a study twice, once as configured and once with ``quantization: 4bit`` on the extraction
variant (each into its own results folder), then prints, per trait: the cosine between the two vectors of the chosen
method at the float32 run's chosen layer, the median cosine over all layers, and the held-out test AUC of each run
at its own chosen layer beside its random-direction 95th percentile.

    python benchmarks/quantized_vectors.py                  # the embedded default (config/config.yaml), ~25 min
    python benchmarks/quantized_vectors.py --compare results-q/fp32 results-q/4bit   # two finished runs
    python benchmarks/quantized_vectors.py --short          # seconds: a tiny random model (hidden 64), one trait
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from datetime import date
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]


def run_extraction(config: dict[str, Any], workdir: Path, results: str, cores: int) -> Path:
    """Extract every trait of ``config`` into ``workdir/results`` (the trait vectors only: what :func:`compare`
    reads)."""
    cfg = dict(config, results_dir=results)
    variant = cfg["extract"]["variant"]
    targets = [f"{results}/vectors/{variant}/{trait}/vectors.json" for trait in cfg["traits"]]
    path = workdir / f"{Path(results).name}.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    env = dict(os.environ, LITELLM_LOCAL_MODEL_COST_MAP="True")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "-s",
            str(REPO / "Snakefile"),
            "-d",
            str(workdir),
            "--configfile",
            str(path),
            "--cores",
            str(cores),
            *targets,
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    if proc.returncode:
        sys.exit(f"extraction into {results} failed:\n{proc.stderr[-3000:]}")
    return workdir / results


def compare(fp32: Path, quantized: Path, variant: str) -> list[dict[str, Any]]:
    """Per trait: vector cosines and test AUCs of the two runs (TraitVectors of ``variant`` in each)."""
    import numpy as np

    from traitscope.core.artifacts import TraitVectors

    rows = []
    for sidecar in sorted((fp32 / "vectors" / variant).glob("*/*/vectors.json")):
        rel = sidecar.parent.relative_to(fp32)
        a = TraitVectors.load(fp32 / rel / "vectors.safetensors", sidecar)
        b = TraitVectors.load(quantized / rel / "vectors.safetensors", quantized / rel / "vectors.json")
        method, layer = a.best_method, a.best_layer
        layers = sorted({int(k.rsplit("_", 1)[1]) for k in a.tensors if k.startswith(f"{method}.layer_")})

        def cos(x: Any, y: Any) -> float:
            return float(np.dot(x, y) / (np.linalg.norm(x) * np.linalg.norm(y)))

        per_layer = [cos(a.get(method, i).numpy(), b.get(method, i).numpy()) for i in layers]
        rows.append(
            {
                "trait": a.trait,
                "method": method,
                "layer": layer,
                "cosine": cos(a.get(method, layer).numpy(), b.get(method, layer).numpy()),
                "median_cosine_all_layers": float(np.median(per_layer)),
                "fp32": {k: a.info["best"][k] for k in ("layer", "auc", "random_auc_p95", "beats_random")},
                "4bit": {k: b.info["best"][k] for k in ("layer", "auc", "random_auc_p95", "beats_random")},
            }
        )
    return rows


def report(rows: list[dict[str, Any]], what: str) -> None:
    commit = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    print(f"== {what}: commit {commit}, {date.today()}, {platform.machine()} {os.cpu_count()} cores")
    print(
        f"{'trait':32s} {'layer':>5s} {'cosine':>7s} {'median':>7s}   {'fp32 AUC (p95, layer)':>24s}   "
        f"{'4-bit AUC (p95, layer)':>24s}"
    )
    for r in rows:
        f, q = r["fp32"], r["4bit"]
        print(
            f"{r['trait']:32s} {r['layer']:5d} {r['cosine']:7.3f} {r['median_cosine_all_layers']:7.3f}   "
            f"{f['auc']:.2f} ({f['random_auc_p95']:.2f}, L{f['layer']:<2d}){'':9s}   "
            f"{q['auc']:.2f} ({q['random_auc_p95']:.2f}, L{q['layer']:<2d})"
        )
    print("RESULTS " + json.dumps(rows))


def short_config(model_dir: Path) -> dict[str, Any]:
    sys.path.insert(0, str(REPO / "tests"))
    from conftest import tiny_config

    cfg = tiny_config(model_dir)
    cfg["traits"] = {"safety/harmful_instruction": cfg["traits"]["safety/harmful_instruction"]}
    for key in ("steering", "optimize", "checks"):
        cfg.pop(key, None)
    cfg["capture"]["prompt_sets"] = ["harmful_eval", "benign_eval"]
    return cfg


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(REPO / "config" / "config.yaml"))
    parser.add_argument("--compare", nargs=2, metavar=("FP32_DIR", "QUANTIZED_DIR"))
    parser.add_argument("--workdir", default=str(REPO), help="where the two results folders go (default: the repo)")
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--short", action="store_true")
    args = parser.parse_args()
    if args.compare:
        cfg = yaml.safe_load(Path(args.config).read_text())
        report(compare(Path(args.compare[0]), Path(args.compare[1]), cfg["extract"]["variant"]), "given runs")
        return
    with tempfile.TemporaryDirectory() as tmp:
        if args.short:
            from traitscope.core.tiny import build_tiny_model

            model = build_tiny_model(Path(tmp) / "model", hidden=64, intermediate=128, layers=2)
            cfg, workdir, what = short_config(model), Path(tmp), "tiny random Llama, hidden 64 (--short)"
        else:
            cfg, workdir, what = yaml.safe_load(Path(args.config).read_text()), Path(args.workdir), args.config
        variant = cfg["extract"]["variant"]
        fp32 = run_extraction(cfg, workdir, "results-quantized/fp32", args.cores)
        quant = json.loads(json.dumps(cfg))
        quant["variants"][variant]["quantization"] = "4bit"
        q4 = run_extraction(quant, workdir, "results-quantized/4bit", args.cores)
        report(compare(fp32, q4, variant), what)


if __name__ == "__main__":
    main()
