"""Capture throughput as a ratio to a bare forward pass with output_hidden_states=True.

Both run on the same right-padded batches of the same prompts (builtin harmful + benign sets with
a replayed response), in interleaved rounds; the script prints tokens/s of each and their ratio
(median over rounds). Capture gathers last/mean/per-response-token activations of the requested
layers inside the hooks, moves them to CPU as float16, and stops the forward after the deepest
requested layer (so with all layers it skips the final norm and the LM head; with fewer, more).

    python benchmarks/capture_throughput.py                    # embedded default (converted first)
    python benchmarks/capture_throughput.py --model PATH --layers 0-14 --device cuda
"""

from __future__ import annotations

import argparse
import statistics
import time

import pandas as pd
import torch

from traitscope.capture import capture_batch
from traitscope.chat import encode_rows
from traitscope.config import entry, parse_layers
from traitscope.models import load_model
from traitscope.prompts import load_prompt_set


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="embedded:smollm2-135m-instruct")
    ap.add_argument("--layers", default="all")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    model, tok = load_model(entry("variants", {"model": args.model, "dtype": args.dtype, "device_map": args.device}))
    layers = parse_layers(args.layers, model.config.num_hidden_layers)
    df = pd.concat([load_prompt_set({"source": "builtin", "name": n, "split": "all"}) for n in ("harmful", "benign")],
                   ignore_index=True)
    df["response"] = "Sure, here is a short answer to your question."
    enc = encode_rows(tok, df, 512)
    enc.sort(key=lambda e: len(e.prompt))
    batches = [enc[i:i + args.batch_size] for i in range(0, len(enc), args.batch_size)]
    device = model.get_input_embeddings().weight.device
    n_tokens = sum(len(e.prompt) + len(e.response) for e in enc)

    def bare() -> None:
        for b in batches:
            width = max(len(e.prompt) + len(e.response) for e in b)
            ids = torch.full((len(b), width), tok.pad_token_id, dtype=torch.long)
            mask = torch.zeros_like(ids)
            for i, e in enumerate(b):
                seq = e.prompt + e.response
                ids[i, : len(seq)] = torch.tensor(seq)
                mask[i, : len(seq)] = 1
            with torch.no_grad():
                model(input_ids=ids.to(device), attention_mask=mask.to(device), output_hidden_states=True, use_cache=False)

    def capture() -> None:
        for b in batches:
            capture_batch(model, [(e.prompt, e.response) for e in b], layers, ["last", "mean", "response"], tok.pad_token_id)

    def timed(fn) -> float:
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t

    bare(), capture()  # warm-up
    t_bare, t_cap = [], []
    for _ in range(args.rounds):
        t_bare.append(timed(bare))
        t_cap.append(timed(capture))
    mb, mc = statistics.median(t_bare), statistics.median(t_cap)
    print(f"model {args.model} on {device}, {len(enc)} prompts, {n_tokens} tokens, batch {args.batch_size}, "
          f"{len(layers)} layers captured, {args.rounds} rounds")
    print(f"bare forward (output_hidden_states=True): {n_tokens / mb:10.1f} tokens/s  (median {mb:.3f}s)")
    print(f"traitscope capture (hooks, gather, fp16): {n_tokens / mc:10.1f} tokens/s  (median {mc:.3f}s)")
    print(f"ratio capture/bare throughput: {mb / mc:.3f}  (target >= 0.9)")


if __name__ == "__main__":
    main()
