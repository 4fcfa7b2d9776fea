"""Capture throughput against its real limit: a bare forward pass of the same truncated stack.

Capture runs the decoder blocks up to the deepest requested layer and stops there (no final norm, no LM head),
gathering last/mean/per-response-token activations inside the hooks and moving them to the CPU as float16. Its
limit is therefore a bare forward of the embeddings and those same blocks, with nothing gathered. All three run on
the same right-padded batches of the same prompts (builtin harmful + benign sets with a replayed response), in
interleaved rounds; the script prints tokens/s of each and the ratios (median over rounds):

  capture / bare truncated stack     how close capture is to its limit (1.0 = no overhead)
  capture / full forward             against model(..., output_hidden_states=True) with the LM head

    python benchmarks/capture_throughput.py                    # embedded default (converted first)
    python benchmarks/capture_throughput.py --model PATH --layers 0-14 --device cuda
    python benchmarks/capture_throughput.py --short            # seconds, a tiny random model (CI)
    python benchmarks/capture_throughput.py --min-ratio 0.95   # exit 1 when capture falls below 0.95x its limit

--min-ratio is the check that a change to capture (or to its settings) did not lower it: the guide states the ratio
measured before and after the speed work of #40; run it on the embedded default with that floor.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

from traitscope.core.architecture import decoder_layers, input_device
from traitscope.core.capture import capture_batch
from traitscope.core.chat import encode_rows
from traitscope.core.models import load_model
from traitscope.core.prompts import load_prompt_set
from traitscope.workflow.config import entry, parse_layers


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="embedded:smollm2-135m-instruct")
    ap.add_argument("--layers", default="all")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--short", action="store_true", help="seconds: a tiny random model, one round (CI)")
    ap.add_argument("--min-ratio", type=float, default=None, help="exit 1 when capture / bare is below this")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        if args.short:
            from traitscope.core.tiny import build_tiny_model

            args.model, args.rounds = str(build_tiny_model(Path(tmp) / "tiny")), 1
        run(args)


def run(args: argparse.Namespace) -> None:
    model, tok = load_model(entry("variants", {"model": args.model, "dtype": args.dtype, "device_map": args.device}))
    layers = parse_layers(args.layers, model.config.num_hidden_layers)
    enc = encoded_prompts(tok)
    m = measure(model, tok, enc, layers, args.batch_size, args.rounds)
    device, n_tokens = input_device(model), m["tokens"]
    print(
        f"model {args.model} on {device}, {len(enc)} prompts, {n_tokens} tokens, batch {args.batch_size}, "
        f"{len(layers)} of {len(decoder_layers(model))} layers captured (up to {max(layers)}), {args.rounds} rounds"
    )
    mf, mb, mc = m["full_s"], m["bare_s"], m["capture_s"]
    print(f"full forward (LM head, output_hidden_states): {n_tokens / mf:10.1f} tokens/s  (median {mf:.3f}s)")
    print(f"bare forward of blocks 0-{max(layers)} (the limit):  {n_tokens / mb:10.1f} tokens/s  (median {mb:.3f}s)")
    print(f"traitscope capture (hooks, gather, fp16):      {n_tokens / mc:10.1f} tokens/s  (median {mc:.3f}s)")
    print(f"ratio capture / bare truncated stack: {mb / mc:.3f}  (1.0 = at the limit)")
    print(f"ratio capture / full forward: {mf / mc:.3f}")
    if args.min_ratio is not None and mb / mc < args.min_ratio:
        raise SystemExit(f"capture runs at {mb / mc:.3f}x its limit, below --min-ratio {args.min_ratio}")


def encoded_prompts(tok, repeat: int = 1) -> list:
    """The builtin harmful and benign sets (``repeat`` times) with a replayed response, encoded, shortest first."""
    df = pd.concat(
        [
            load_prompt_set(entry("prompt_sets", {"source": "builtin", "name": n, "split": "all"}), seed=0)
            for n in ("harmful", "benign")
        ]
        * repeat,
        ignore_index=True,
    )
    df["response"] = "Sure, here is a short answer to your question."
    enc = encode_rows(tok, df, 512)
    enc.sort(key=lambda e: len(e.prompt))
    return enc


def measure(model, tok, enc: list, layers: list[int], batch_size: int, rounds: int) -> dict[str, float]:
    """Median seconds over ``rounds`` of a full forward, a bare forward of blocks 0..max(layers) and capture, on the
    same right-padded batches (after one warm-up of each), and the tokens they hold."""
    batches = [enc[i : i + batch_size] for i in range(0, len(enc), batch_size)]
    device = input_device(model)
    blocks = decoder_layers(model)
    deepest = max(layers)

    def padded(b):
        width = max(len(e.prompt) + len(e.response) for e in b)
        ids = torch.full((len(b), width), tok.pad_token_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, e in enumerate(b):
            seq = e.prompt + e.response
            ids[i, : len(seq)] = torch.tensor(seq)
            mask[i, : len(seq)] = 1
        return ids.to(device), mask.to(device)

    def full() -> None:
        for b in batches:
            ids, mask = padded(b)
            with torch.no_grad():
                model(input_ids=ids, attention_mask=mask, output_hidden_states=True, use_cache=False)

    def truncated() -> None:  # embeddings and blocks 0..deepest, nothing gathered: capture's limit
        base = model.get_decoder() if hasattr(model, "get_decoder") else model.model
        parent, name = _owner(base, blocks)
        saved = getattr(parent, name)
        setattr(parent, name, torch.nn.ModuleList(list(saved)[: deepest + 1]))
        try:
            for b in batches:
                ids, mask = padded(b)
                with torch.no_grad():
                    base(input_ids=ids, attention_mask=mask, use_cache=False)
        finally:
            setattr(parent, name, saved)

    def capture() -> None:
        for b in batches:
            capture_batch(
                model, [(e.prompt, e.response) for e in b], layers, ["last", "mean", "response"], tok.pad_token_id
            )

    def timed(fn) -> float:
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t

    full(), truncated(), capture()  # warm-up
    t_full, t_bare, t_cap = [], [], []
    for _ in range(rounds):
        t_full.append(timed(full))
        t_bare.append(timed(truncated))
        t_cap.append(timed(capture))
    return {
        "tokens": sum(len(e.prompt) + len(e.response) for e in enc),
        "full_s": statistics.median(t_full),
        "bare_s": statistics.median(t_bare),
        "capture_s": statistics.median(t_cap),
    }


def _owner(base: torch.nn.Module, blocks: torch.nn.ModuleList) -> tuple[torch.nn.Module, str]:
    """The module and attribute name that hold the decoder blocks below ``base``."""
    for module in base.modules():
        for name, child in module.named_children():
            if child is blocks:
                return module, name
    raise SystemExit("cannot find the decoder blocks' owner")


if __name__ == "__main__":
    main()
