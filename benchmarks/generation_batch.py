"""Generation speed against batch size: what the embedded default's ``capture.batch_size`` and ``extract.batch_size``
are chosen from.

traitscope generates answers in batches (``traitscope.core.generation.generate_responses``: left-padded, greedy,
with the KV cache, stopping when every row has ended). On a CPU thread a step of a small batch is dominated by work
that does not grow with the batch, so the cost per generated token per row falls as the batch grows, until the
matrix products fill the core. The script generates a fixed number of tokens for the same prompts (builtin harmful
and benign eval sets, one thread, the model's own end-of-turn disabled so every row runs the full length) at each
batch size, in interleaved rounds, and prints milliseconds per token per row and the speed-up against batch 16 (the
median over rounds):

    python benchmarks/generation_batch.py                  # embedded default (converted first)
    python benchmarks/generation_batch.py --model PATH --threads 4
    python benchmarks/generation_batch.py --short          # seconds: a tiny random model (CI)
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

from traitscope.core.chat import encode_rows
from traitscope.core.generation import generate_responses
from traitscope.core.models import load_model
from traitscope.core.prompts import load_prompt_set
from traitscope.core.specs import Generation
from traitscope.workflow.config import entry


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="embedded:smollm2-135m-instruct")
    ap.add_argument("--batches", default="4,16,32,64")
    ap.add_argument("--tokens", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--short", action="store_true", help="seconds: a tiny random model, one round (CI)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        if args.short:
            from traitscope.core.tiny import build_tiny_model

            args.model, args.rounds, args.tokens = str(build_tiny_model(Path(tmp) / "tiny")), 1, 4
        run(args)


def run(args: argparse.Namespace) -> None:
    model, tok = load_model(entry("variants", {"model": args.model, "dtype": "float32", "device_map": "cpu"}))
    model.generation_config.eos_token_id = None  # every row runs the full length: the same work at every batch size
    df = pd.concat(
        [
            load_prompt_set(entry("prompt_sets", {"source": "builtin", "name": n, "split": "all"}), seed=0)
            for n in ("harmful", "benign")
        ],
        ignore_index=True,
    )
    batches = [int(b) for b in args.batches.split(",")]
    rows = df.head(max(batches)).reset_index(drop=True)
    encoded = encode_rows(tok, rows, 512)
    gen = Generation(enabled=True, max_new_tokens=args.tokens, do_sample=False, temperature=1.0, top_p=1.0)
    timings: dict[int, list[float]] = {b: [] for b in batches}
    for _ in range(args.rounds):
        for b in batches:
            start = time.perf_counter()
            generate_responses(model, tok, encoded[:b], gen, b, seed=0)
            timings[b].append((time.perf_counter() - start) / (b * args.tokens))
    print(f"model {args.model}, {args.threads} thread(s), {args.tokens} tokens, median of {args.rounds} round(s)")
    base = statistics.median(timings[16]) if 16 in timings else None
    for b in batches:
        per = statistics.median(timings[b])
        versus = f", {base / per:.2f}x the speed of batch 16" if base else ""
        print(f"batch {b}: {per * 1000:.2f} ms per generated token per row{versus}")


if __name__ == "__main__":
    main()
