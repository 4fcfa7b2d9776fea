"""Peak memory of capture and of the readers of activations, at two shard sizes: it must not grow with the shard.

Each measurement runs in a fresh process, which loads a random Llama (no download), builds a prompt table of N
prompts with a replayed response, and runs one stage; its peak resident memory (ru_maxrss) is printed. Stages:

  capture    capture_shard: chunks streamed into the shard file (what the capture job runs)
  in_memory  capture_prompts, the whole shard in memory then saved (the old path, for comparison: it grows)
  project    write_scores over ActivationShard.iter_rows of that shard (the project job)
  stream     iter_chunks with the projection as reduce, then write_scores (the capture_stream job)
  harm       ShardFiles.project at every layer (the harm check and the backdoor baseline)

For each stage the script prints the peak RSS at both sizes, the shard's size on disk and the ratio larger/smaller:
within 1.15 means memory does not grow with the shard.

    python benchmarks/capture_memory.py                       # 250 and 2000 prompts, hidden 256, 8 layers
    python benchmarks/capture_memory.py --short               # seconds: capture and project, 20 and 80 prompts,
                                                              # hidden 32 (CI: it runs, and prints its figures)
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

STAGES = ("capture", "in_memory", "project", "stream", "harm")


def child(args: argparse.Namespace) -> None:
    """One stage at one size, in this process; prints a JSON line with the peak RSS and the shard size."""
    import torch

    from traitscope.core.artifacts import ActivationShard, ShardFiles, TraitVectors
    from traitscope.core.capture import capture_prompts, capture_shard, iter_chunks
    from traitscope.core.models import load_model
    from traitscope.core.project import project_files, score_tensors, write_scores
    from traitscope.core.prompts import normalise
    from traitscope.core.specs import BaselineJob, CaptureJob
    from traitscope.workflow.config import entry, section
    from traitscope.workflow.jobs import steady_memory

    steady_memory()  # as every job does (traitscope.workflow.jobs.setup)
    torch.set_num_threads(2)
    work = Path(args.work)
    model, tok = load_model(entry("variants", {"model": str(work / "model"), "dtype": "float32", "device_map": "cpu"}))
    words = " ".join(["Sure, here is the answer"] * max(1, args.response_words // 5))
    df = normalise(
        [{"id": f"p{i}", "prompt": f"How do I bake bread number {i}?", "response": words} for i in range(args.n)]
    )
    layers = tuple(range(model.config.num_hidden_layers))
    c = section("capture", {})
    job = CaptureJob(
        layers=layers,
        positions=("last", "mean", "response"),
        batch_size=32,
        max_length=c.max_length,
        chunk_size=args.chunk_size,
        generation=None,
        seed=1234,
        sites=("resid",),
    )
    shard = work / f"shard-{args.n}.safetensors"
    cache = work / f"cache-{args.n}"
    d = model.config.hidden_size
    vectors = TraitVectors(
        {
            "trait": "t/x",
            "position": "last",
            "best": {"layer": layers[-1], "method": "mean_diff"},
            "hidden_size": d,
            "vectors": [],
            "model": "tiny",
        },
        {f"mean_diff.layer_{layer}": torch.randn(d) for layer in layers},
    )
    proj = section("project", {"layers": "all", "methods": ["mean_diff"], "per_token": True})
    baseline = BaselineJob(n_random=20, seed=1, per_token=True)
    out = work / f"out-{args.stage}-{args.n}"
    out.mkdir(exist_ok=True)
    if args.stage == "capture":
        capture_shard(model, tok, df, job, shard, model_key="bench", cache_dir=cache)
    elif args.stage == "in_memory":
        tensors, meta, _ = capture_prompts(model, tok, df, job, model_key="bench")
        ActivationShard(tensors, meta).save(out / "shard.safetensors")
    elif args.stage == "project":
        parts = project_files([shard], [vectors], proj, len(layers), baseline)
        write_scores(parts, baseline, out / "scores.parquet", out / "tokens.parquet", out / "baseline.safetensors")
    elif args.stage == "stream":

        def reduce(chunk, ids):
            part = ActivationShard(chunk, {"ids": ids, "layers": list(layers), "positions": list(job.positions)})
            return score_tensors(part, [vectors], proj, len(layers), baseline)

        chunks = iter_chunks(
            model, tok, df, job, model_key="bench", cache_dir=out / "cache", reduce=reduce, reduce_key="bench"
        )
        write_scores(
            ((ch.tensors, ch.ids) for ch in chunks),
            baseline,
            out / "scores.parquet",
            out / "tokens.parquet",
            out / "baseline.safetensors",
        )
    elif args.stage == "harm":
        files = ShardFiles([shard])
        for layer in layers:
            files.project("last", layer, "resid", vectors.unit("mean_diff", layer).numpy())
            files.project("response_mean", layer, "resid", vectors.unit("mean_diff", layer).numpy())
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    size = shard.stat().st_size if shard.exists() else (out / "shard.safetensors").stat().st_size
    print(json.dumps({"stage": args.stage, "n": args.n, "peak_mb": round(peak_mb, 1), "shard_mb": size / 2**20}))


def measure(work: Path, stage: str, n: int, args: argparse.Namespace) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--child",
        "--work",
        str(work),
        "--stage",
        stage,
        "--n",
        str(n),
        "--chunk-size",
        str(args.chunk_size),
        "--response-words",
        str(args.response_words),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"{stage} at {n} prompts failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--short", action="store_true", help="seconds: 20 and 80 prompts on a hidden-32 model")
    ap.add_argument("--sizes", default="250,2000")
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--chunk-size", type=int, default=250)
    ap.add_argument("--response-words", type=int, default=20)
    ap.add_argument("--stages", default=",".join(STAGES))
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--work", help=argparse.SUPPRESS)
    ap.add_argument("--stage", help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args)
    if args.short:
        args.sizes, args.hidden, args.layers, args.chunk_size = "20,80", 32, 2, 20
        args.stages = "capture,project"
    sizes = [int(x) for x in args.sizes.split(",")]
    stages = args.stages.split(",")
    from traitscope.core.tiny import build_tiny_model

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        build_tiny_model(work / "model", hidden=args.hidden, layers=args.layers, intermediate=2 * args.hidden)
        print(
            f"random Llama, hidden {args.hidden}, {args.layers} layers (all captured), positions last, mean and "
            f"response ({args.response_words}-word replayed responses), chunk_size {args.chunk_size}"
        )
        results = {}
        for stage in ["capture", *[s for s in stages if s != "capture"]]:  # the readers read the captured shards
            results[stage] = [measure(work, stage, n, args) for n in sizes]
        print(
            f"{'stage':<10} "
            + " ".join(f"{f'peak RSS at {n} (MB)':>20}" for n in sizes)
            + f" {'shard (MB)':>12} {'ratio':>7}"
        )
        for stage in stages:
            rows = results[stage]
            ratio = rows[-1]["peak_mb"] / rows[0]["peak_mb"]
            print(
                f"{stage:<10} "
                + " ".join(f"{r['peak_mb']:>20.1f}" for r in rows)
                + f" {rows[-1]['shard_mb']:>12.1f} {ratio:>7.3f}"
            )
        print("ratio = peak RSS of the largest over the smallest shard; within 1.15 = does not grow with the shard")
        print("RESULTS " + json.dumps({s: [r["peak_mb"] for r in results[s]] for s in stages}))


if __name__ == "__main__":
    main()
