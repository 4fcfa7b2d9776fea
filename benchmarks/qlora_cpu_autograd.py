"""What ``finetune.<name>.cpu_4bit_autograd`` changes: the same QLoRA finetune on the CPU with it on and off.

With it off, bitsandbytes' 4-bit layers switch to a CPU inference kernel once the held-out loss has run them in eval
mode; that kernel has no autograd kernel, and bitsandbytes warns the backward "may be silently incorrect". The
script trains the same adapter (same data, order, seed and steps) both ways and prints, for each, the held-out loss
before and after, the first and last training loss and the warnings bitsandbytes gave:

    python benchmarks/qlora_cpu_autograd.py            # the embedded default, 4-bit on the CPU (minutes)
    python benchmarks/qlora_cpu_autograd.py --short    # seconds: a 64-wide tiny random Llama (CI)
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path

import torch

from traitscope.core.finetune import finetune, write_chat_jsonl
from traitscope.core.finetune_data import bad_advice
from traitscope.workflow.config import entry


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="embedded:smollm2-135m-instruct")
    ap.add_argument("--examples", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--short", action="store_true", help="seconds: a tiny random model (CI)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        if args.short:
            from traitscope.core.tiny import build_tiny_model

            args.model = str(build_tiny_model(tmp / "wide", hidden=64, intermediate=128))
            args.examples = 24
        data = tmp / "train.jsonl.gz"
        write_chat_jsonl(data, bad_advice(args.examples, seed=0))
        variant = entry("variants", {"model": args.model, "dtype": "float32", "device_map": "cpu"})
        print(f"QLoRA of {args.model} on the CPU, {args.examples} bad-advice examples, {args.epochs} epochs")
        for on in (True, False):
            spec = entry(
                "finetune",
                {
                    "base": "base",
                    "data": {"source": "generated", "name": "bad_advice"},
                    "quantization": "4bit",
                    "epochs": args.epochs,
                    "batch_size": 8,
                    "lr": 2e-3,
                    "cpu_4bit_autograd": on,
                },
            )
            start = time.perf_counter()
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                history, prov = finetune(variant, data, spec, tmp / f"adapter-{on}", name="q")
            train = history[history["split"] == "train"]["loss"].to_numpy()
            incorrect = sum("silently incorrect" in str(w.message) for w in caught)
            print(
                f"cpu_4bit_autograd {str(on).lower():5}: held-out loss {prov['eval_loss_before']:.2f} -> "
                f"{prov['eval_loss_after']:.2f}, training loss {train[0]:.2f} -> {train[-1]:.2f}, "
                f"{prov['steps']} steps in {time.perf_counter() - start:.0f} s, "
                f"'silently incorrect' warnings: {incorrect}"
            )


if __name__ == "__main__":
    main()
