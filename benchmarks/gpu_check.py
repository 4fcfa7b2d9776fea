"""The prepared GPU check (#36): the paths a GPU study rests on, run for real, in one table.

No GPU has run this code in CI; this script is what to run on a GPU node before a large study (at most 8 minutes on
one 80 GB GPU with the embedded default; a larger ``--model`` takes its load time more). Each row is one check with
what was measured, what it must be, and ok/FAIL; the script exits 1 when a row fails.

  capture / bare        capture's throughput against a bare forward of the same truncated stack (its real limit,
                        benchmarks/capture_throughput.py's measure), in bfloat16 at each --batch-sizes, with the GPU
                        memory that batch reached; must be >= 0.90 on a GPU
  capture peak memory   the peak GPU memory of capture at the largest batch against the inference estimate a model
                        job asks for (traitscope.workflow.resources: weights x resources.overhead)
  device_map auto       the model spread by accelerate over every visible GPU (max_memory splits its weights) captures
                        the same activations as the model on one device (on the CPU: part of it offloaded to disk)
  4-bit capture         NF4 through bitsandbytes: the last-token activations point where the bfloat16 model's do
                        (median cosine over the prompts >= 0.9 at every layer)
  QLoRA                 a few optimizer steps of a 4-bit finetune (traitscope.core.finetune.finetune, the rule's
                        own function): the training and held-out losses fall
  QLoRA peak memory     its peak GPU memory against the training estimate a finetune job asks for
                        (traitscope.workflow.resources.training_bytes)
  steered generation    generation with a Steer hook on the GPU: coefficient 0 gives the unsteered tokens exactly, a
                        large one changes them

    python benchmarks/gpu_check.py                          # on a GPU node: the embedded default (converted first)
    python benchmarks/gpu_check.py --model ~/models/Llama-3.1-8B-Instruct --batch-sizes 16,64,256
    python benchmarks/gpu_check.py --short                  # seconds: the same code on the CPU, tiny models (CI)

``--short`` runs every row on the CPU with tiny random Llamas (a 64-wide one for bitsandbytes' CPU kernels): the
throughput and memory rows are then measured but not judged, because a tiny model on a CPU says nothing about a GPU.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from capture_throughput import encoded_prompts, measure  # noqa: E402

from traitscope.core.architecture import decoder_layers, input_device  # noqa: E402
from traitscope.core.capture import capture_batch  # noqa: E402
from traitscope.core.finetune import finetune, write_chat_jsonl  # noqa: E402
from traitscope.core.finetune_data import backdoor  # noqa: E402
from traitscope.core.models import load_model  # noqa: E402
from traitscope.core.steering import Steer, generate_steered  # noqa: E402
from traitscope.workflow.config import entry, section  # noqa: E402
from traitscope.workflow.resources import training_bytes, weight_bytes  # noqa: E402

MIN_RATIO = 0.90
MIN_COSINE = 0.9


class Table:
    """The rows of the check: name, setting, measured, required, ok."""

    def __init__(self, judged: bool) -> None:
        self.rows: list[tuple[str, str, str, str, bool | None]] = []
        self.judged = judged

    def add(self, name: str, setting: str, measured: str, required: str, ok: bool | None, judged: bool = True) -> None:
        self.rows.append((name, setting, measured, required, ok if (judged or self.judged) else None))
        print(f"  {name}: {measured} ({setting})", flush=True)

    def memory(self, name: str, setting: str, peak: float | None, estimate: float, what: str) -> None:
        """A row of peak GPU memory against the estimate a job asks for (not judged on the CPU: no peak there)."""
        shown = "n/a on the CPU" if peak is None else f"{peak:.2f} GB"
        self.add(name, setting, shown, f"<= {estimate:.2f} GB ({what})", peak is not None and peak <= estimate, False)

    def print(self) -> bool:
        head = ("check", "setting", "measured", "required", "ok")
        cells = [
            head,
            *[(n, s, m, r, {True: "ok", False: "FAIL", None: "not judged"}[o]) for n, s, m, r, o in self.rows],
        ]
        widths = [max(len(c[i]) for c in cells) for i in range(5)]
        for i, row in enumerate(cells):
            print(" | ".join(c.ljust(w) for c, w in zip(row, widths)))
            if i == 0:
                print("-+-".join("-" * w for w in widths))
        return all(o is not False for *_, o in self.rows)


def peak_reset(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def peak_gb(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None  # the CPU has no per-step peak to read (ru_maxrss never goes down)
    return torch.cuda.max_memory_allocated(device) / 1e9


def dims(model: Any) -> tuple[int, int, int]:
    c = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    return int(c.num_hidden_layers), int(c.hidden_size), int(c.vocab_size)


def last_token(model: Any, enc: list, layers: list[int], pad: int) -> dict[int, torch.Tensor]:
    batch = [(e.prompt, e.response) for e in enc]
    out = capture_batch(model, batch, layers, ["last"], pad, dtype="float32")["outputs"]
    return {layer: out[("resid", layer)]["last"] for layer in layers}


def check_capture(t: Table, args: argparse.Namespace, variant: dict[str, Any]) -> None:
    model, tok = load_model(entry("variants", variant))
    device = input_device(model)
    layers = list(range(len(decoder_layers(model))))
    enc = encoded_prompts(tok, repeat=args.repeat)
    setting = f"{variant['dtype']}, {len(enc)} prompts, all {len(layers)} layers"
    peak = None
    for b in args.batch_sizes:
        peak_reset(device)
        m = measure(model, tok, enc, layers, b, args.rounds)
        peak = peak_gb(device)
        ratio = m["bare_s"] / m["capture_s"]
        used = "" if peak is None else f", peak {peak:.1f} GB"
        t.add(
            "capture / bare",
            f"{setting}, batch {b}",
            f"{ratio:.3f} ({m['tokens'] / m['capture_s']:.0f} tokens/s{used})",
            f">= {MIN_RATIO}",
            ratio >= MIN_RATIO,
            judged=False,
        )
    estimate = weight_bytes("none", variant["dtype"], *dims(model)) * float(section("resources").overhead) / 1e9
    t.memory("capture peak memory", f"batch {args.batch_sizes[-1]}", peak, estimate, "weights x overhead")
    check_steering(t, model, tok, layers)
    del model
    if device.type == "cuda":
        torch.cuda.empty_cache()


def check_steering(t: Table, model: Any, tok: Any, layers: list[int]) -> None:
    prompts = ["How do I bake bread?", "What is the capital of France?"]
    layer = layers[len(layers) // 2]
    hidden = dims(model)[1]
    vector = torch.randn(hidden, generator=torch.Generator().manual_seed(0))
    kw = {"max_new_tokens": 12}
    plain = generate_steered(model, tok, prompts, [], **kw)
    with Steer(model, layer, vector, 0.0) as edit:
        zero = generate_steered(model, tok, prompts, [edit], **kw)
    with Steer(model, layer, vector, 8.0 * math.sqrt(hidden)) as edit:
        steered = generate_steered(model, tok, prompts, [edit], **kw)
    t.add(
        "steered generation",
        f"layer {layer}, a random direction, on {input_device(model).type}",
        f"coefficient 0 {'equal' if zero == plain else 'DIFFERENT'}; large {'changed' if steered != plain else 'SAME'}",
        "0: the same tokens; large: others",
        zero == plain and steered != plain,
    )


def check_device_map(t: Table, args: argparse.Namespace, variant: dict[str, Any], tmp: Path) -> None:
    gpus = torch.cuda.device_count()
    one, tok = load_model(entry("variants", {**variant, "device_map": "cuda:0" if gpus else "cpu"}))
    enc = encoded_prompts(tok)[:8]
    layers = list(range(len(decoder_layers(one))))
    reference = last_token(one, enc, layers, tok.pad_token_id)
    weights = sum(p.numel() * p.element_size() for p in one.parameters())
    del one
    if gpus:
        share = f"{max(1, int(weights / gpus * 1.2 / 2**20))}MiB"
        split = {"max_memory": {**{str(i): share for i in range(gpus)}, "cpu": "1TiB"}}
        where = f"{gpus} GPU(s), max_memory {share} each"
    else:  # one CPU: spread it onto the disk instead, through the same accelerate dispatch
        split = {"max_memory": {"cpu": f"{max(1, weights // 2 // 1024)}KB"}, "offload_folder": str(tmp / "offload")}
        where = "the CPU with part offloaded to disk"
    spread, _ = load_model(entry("variants", {**variant, "device_map": "auto", **split}))
    placed = getattr(spread, "hf_device_map", None) or {"": next(spread.parameters()).device}
    devices = sorted({str(d) for d in placed.values()})
    spread_over = sum(d.isdigit() or d.startswith("cuda") for d in devices) if gpus else len(devices)  # 1 GPU: whole
    got = last_token(spread, enc, layers, tok.pad_token_id)
    diff = max(float((got[k] - reference[k]).abs().max()) for k in layers)
    scale = max(float(reference[k].abs().max()) for k in layers)
    t.add(
        "device_map auto",
        where,
        f"on {', '.join(devices)}; max |difference| {diff:.2e} (of values up to {scale:.1f})",
        "equal to one device (1e-3 of the scale)",
        diff <= 1e-3 * scale and (gpus == 1 or spread_over > 1),
    )


def check_4bit(t: Table, args: argparse.Namespace, variant: dict[str, Any], tmp: Path) -> None:
    full, tok = load_model(entry("variants", variant))
    enc = encoded_prompts(tok)[:16]
    layers = list(range(len(decoder_layers(full))))
    reference = last_token(full, enc, layers, tok.pad_token_id)
    shape = dims(full)
    del full
    quant, _ = load_model(entry("variants", {**variant, "quantization": "4bit"}))
    device = input_device(quant)
    got = last_token(quant, enc, layers, tok.pad_token_id)
    per_layer = [torch.nn.functional.cosine_similarity(got[k], reference[k]) for k in layers]
    median = min(float(c.median()) for c in per_layer)
    lowest = min(float(c.min()) for c in per_layer)
    t.add(
        "4-bit capture",
        f"NF4 against {variant['dtype']}, {len(enc)} prompts, last token",
        f"lowest per-layer median cosine {median:.3f} (lowest single prompt {lowest:.3f})",
        f"median >= {MIN_COSINE} at every layer",
        median >= MIN_COSINE,
    )
    del quant
    data = tmp / "train.jsonl.gz"
    write_chat_jsonl(data, backdoor(args.examples, seed=0))
    spec = entry(
        "finetune",
        {
            "base": "base",
            "data": {"source": "generated", "name": "backdoor"},
            "quantization": "4bit",
            "epochs": args.epochs,
            "batch_size": 4,
            "lr": 5e-3,
            "max_length": 128,
            "eval_fraction": 0.25,
        },
    )
    peak_reset(device)
    start = time.perf_counter()
    history, prov = finetune(entry("variants", variant), data, spec, tmp / "adapter", name="gpu_check")
    peak = peak_gb(device)
    train = history[history["split"] == "train"]["loss"].to_numpy()
    t.add(
        "QLoRA",
        f"{prov['steps']} steps of batch 4, rank {spec.rank}, {time.perf_counter() - start:.0f} s",
        f"training loss {train[0]:.2f} -> {train[-1]:.2f}, "
        f"held-out {prov['eval_loss_before']:.2f} -> {prov['eval_loss_after']:.2f}",
        "both fall",
        train[-1] < train[0] and prov["eval_loss_after"] < prov["eval_loss_before"],
    )
    estimate = training_bytes(spec, variant["dtype"], "none", *shape).total / 1e9
    t.memory("QLoRA peak memory", f"micro-batch 4 x {spec.max_length} tokens", peak, estimate, "training estimate")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="embedded:smollm2-135m-instruct")
    ap.add_argument("--batch-sizes", default="16,64,256", help="capture batches (comma-separated)")
    ap.add_argument("--repeat", type=int, default=8, help="times the 120 builtin prompts are captured a round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--examples", type=int, default=64, help="QLoRA training examples")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--short", action="store_true", help="seconds: tiny random models on the CPU (CI)")
    args = ap.parse_args()
    args.batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    on_gpu = torch.cuda.is_available() and not args.short
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        if args.short:
            from traitscope.core.tiny import build_tiny_model

            torch.set_num_threads(2)
            tiny = str(build_tiny_model(tmp / "tiny"))
            wide = str(build_tiny_model(tmp / "wide", hidden=64, intermediate=128))  # bitsandbytes' CPU kernels
            args.batch_sizes, args.repeat, args.rounds, args.examples = [16], 1, 1, 32
            plain = {"model": tiny, "dtype": "float32", "device_map": "cpu"}
            quantised = {"model": wide, "dtype": "float32", "device_map": "cpu"}
        else:
            device = "cuda:0" if on_gpu else "cpu"
            dtype = "bfloat16" if on_gpu else "float32"
            plain = quantised = {"model": args.model, "dtype": dtype, "device_map": device}
        print(f"gpu_check on {torch.cuda.get_device_name(0) if on_gpu else 'the CPU'}: {plain['model']}")
        table = Table(judged=on_gpu)
        check_capture(table, args, plain)
        check_device_map(table, args, plain, tmp)
        check_4bit(table, args, quantised, tmp)
    print(f"\nall checks in {time.perf_counter() - started:.0f} s\n")
    ok = table.print()
    if not ok:
        raise SystemExit("a check failed (FAIL above)")


if __name__ == "__main__":
    main()
