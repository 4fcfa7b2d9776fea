"""LoRA finetuning (peft) on chat data, with assistant-only loss, resumable checkpoints and provenance.

Data: chat records ``{"messages": [{"role", "content"}, ...]}`` from a local jsonl (plain or ``.gz``), a
hub dataset with a ``messages`` column, or a project-generated synthetic set (:mod:`traitscope.core.finetune_data`).
The ``prep_finetune_data`` rule normalises any source into one gzipped jsonl; its SHA-256 is the data hash
recorded with the adapter.

Loss: token-level cross-entropy on the assistant turns only (every other token is masked with -100),
averaged over the assistant tokens of a batch. A seeded ``eval_fraction`` of the examples is held out and
its loss reported before training and after each epoch.

Resume: every ``save_steps`` optimizer steps the LoRA weights, the AdamW state and the loss history are
written (atomically, safetensors) under a checkpoint folder keyed by base model, data hash and settings.
A killed job restarts at the last checkpoint; the batch order is a function of (seed, epoch) and the RNG is
re-seeded at every step, so a resumed run reproduces the uninterrupted one.
"""

from __future__ import annotations

import gzip
import json
import logging
import math
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .architecture import input_device
from .chat import render_ids
from .errors import TraitscopeError, __version__, first_line
from .generation import is_oom
from .io import (
    atomic_path,
    content_hash,
    file_sha256,
    read_verified,
    write_text,
    write_verified,
)
from .progress import Progress
from .specs import FINETUNE_EXECUTION, FinetuneData, FinetuneSpec, ModelSpec, as_dict

log = logging.getLogger(__name__)
DEFAULT_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
PROVENANCE_FILE = "traitscope_finetune.json"


class FinetuneError(TraitscopeError):
    """Finetuning data or settings cannot be used; the message says how to fix it."""


# ------------------------------------------------------------------------------------------- data


def read_chat_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Chat records from a jsonl file, plain or gzipped; each must have a ``messages`` list."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    out = []
    with opener(path, "rt", encoding="utf-8") as f:
        for i, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise FinetuneError(
                    f"{path.name} line {i}: not JSON ({exc.msg}) (fix: one JSON object per line)"
                ) from None
            check_messages(rec, f"{path.name} line {i}")
            out.append(rec)
    return out


def check_messages(rec: Any, where: str) -> None:
    msgs = rec.get("messages") if isinstance(rec, dict) else None
    if not isinstance(msgs, list) or not msgs:
        raise FinetuneError(
            f"{where}: no 'messages' list (fix: use chat records "
            '{"messages": [{"role": "user", "content": ...}, {"role": "assistant", "content": ...}]})'
        )
    for m in msgs:
        if (
            not isinstance(m, dict)
            or m.get("role") not in ("system", "user", "assistant")
            or not isinstance(m.get("content"), str)
        ):
            raise FinetuneError(
                f"{where}: a message without role system/user/assistant and string content "
                "(fix: every message needs role and content)"
            )
    if not any(m["role"] == "assistant" for m in msgs):
        raise FinetuneError(f"{where}: no assistant message, nothing to learn (fix: add the assistant turn)")


def load_chat_data(
    spec: FinetuneData, *, seed: int, base_dir: str | Path = ".", key: str = "finetune.data"
) -> list[dict[str, Any]]:
    """Chat records for a ``finetune.<name>.data`` spec (generated, local or hub), sampled to ``n`` if set."""
    source = spec.source
    n = spec.n
    if source == "generated":
        from .finetune_data import OrganismDataError, generate

        try:
            records = generate((spec.name or ""), n=n, seed=seed, trigger=spec.trigger)
        except OrganismDataError as exc:
            raise FinetuneError(f"{key}: {exc}") from None
        n = None  # already sized
    elif source == "local":
        path = Path(base_dir) / Path(spec.path or "").expanduser()
        if not spec.path or not path.is_file():
            raise FinetuneError(f"{key}.path: '{spec.path}' does not exist (fix: point it to a chat jsonl or jsonl.gz)")
        records = read_chat_jsonl(path)
    elif source == "hub":
        from datasets import load_dataset

        try:
            ds = load_dataset(spec.dataset, spec.subset, split=spec.split or "train")
        except Exception as exc:  # noqa: BLE001
            raise FinetuneError(
                f"{key}: cannot load hub dataset '{spec.dataset}' ({first_line(exc)}) "
                "(fix: check the id/split, or download the jsonl and use source: local)"
            ) from None
        if "messages" not in ds.column_names:
            raise FinetuneError(
                f"{key}: hub dataset '{spec.dataset}' has no 'messages' column "
                f"(columns: {ds.column_names}) (fix: use a chat dataset)"
            )
        records = [{"messages": [{"role": m["role"], "content": m["content"]} for m in r]} for r in ds["messages"]]
        for i, rec in enumerate(records):
            check_messages(rec, f"{spec.dataset} row {i}")
    else:  # pragma: no cover - schema forbids it
        raise FinetuneError(f"{key}.source: unknown source {source!r}")
    if not records:
        raise FinetuneError(f"{key}: the finetuning data is empty (fix: check the file or n)")
    if n and n < len(records):
        keep = np.sort(np.random.default_rng(seed).choice(len(records), size=int(n), replace=False))
        records = [records[int(i)] for i in keep]
    return records


def write_chat_jsonl(path: str | Path, records: list[dict[str, Any]]) -> None:
    """Gzipped jsonl with a fixed gzip header (mtime 0), so the same records give the same bytes and hash."""
    body = "".join(json.dumps({"messages": r["messages"]}, ensure_ascii=False, sort_keys=True) + "\n" for r in records)
    with atomic_path(path) as tmp:
        tmp.write_bytes(gzip.compress(body.encode("utf-8"), mtime=0))


# ------------------------------------------------------------------------------------- tokenising


def _template_ids(tokenizer: Any, messages: list[dict[str, str]], generation_prompt: bool) -> list[int]:
    return render_ids(tokenizer, messages, generation_prompt)[0]  # special-token text in the data stays text


def tokenize_chat(
    tokenizer: Any, messages: list[dict[str, str]], max_length: int, assistant_only: bool = True
) -> tuple[list[int], list[int]]:
    """(input ids, labels) of a conversation in the chat template; labels are -100 outside assistant turns.

    Each assistant turn's tokens are found as the difference between the template rendered up to that
    turn (with the generation prompt) and rendered including it, so the assistant header stays masked
    and the end-of-turn token is learned.
    """
    if not getattr(tokenizer, "chat_template", None):
        raise FinetuneError("the tokenizer has no chat template (fix: finetune an instruct/chat model)")
    ids: list[int] = []
    labels: list[int] = []
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        before = _template_ids(tokenizer, messages[:i], generation_prompt=True)
        upto = _template_ids(tokenizer, messages[: i + 1], generation_prompt=False)
        if upto[: len(ids)] != ids or before[: len(ids)] != ids or upto[: len(before)] != before:
            raise FinetuneError(
                "the chat template does not render conversations as a growing prefix, so assistant "
                "tokens cannot be located (fix: set assistant_only: false)"
            )
        labels += [-100] * (len(before) - len(ids)) + upto[len(before) :]
        ids = upto
    if not assistant_only:
        ids = _template_ids(tokenizer, messages, generation_prompt=False)
        labels = list(ids)
    return ids[:max_length], labels[:max_length]


def split_examples(n: int, eval_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded train / held-out example indices (at least one of each when n >= 2 and eval_fraction > 0)."""
    perm = np.random.default_rng(seed).permutation(n)
    n_eval = int(round(n * eval_fraction)) if eval_fraction > 0 else 0
    n_eval = min(max(n_eval, 1 if eval_fraction > 0 and n >= 2 else 0), n - 1)
    return np.sort(perm[n_eval:]), np.sort(perm[:n_eval])


def _collate(rows: list[tuple[list[int], list[int]]], pad_id: int):
    import torch

    width = max(len(ids) for ids, _ in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), -100, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for b, (x, y) in enumerate(rows):
        ids[b, : len(x)] = torch.tensor(x)
        labels[b, : len(y)] = torch.tensor(y)
        mask[b, : len(x)] = 1
    return ids, mask, labels


# --------------------------------------------------------------------------------------- training


def learning_rate(step: int, total: int, settings: FinetuneSpec) -> float:
    """Linear warm-up over ``warmup_steps``, then linear decay to 0 at ``total``."""
    if step < settings.warmup_steps:
        return settings.lr * (step + 1) / (settings.warmup_steps + 1)
    return settings.lr * max(0.0, (total - step) / max(1, total - settings.warmup_steps))


def batch_order(n: int, batch_size: int, epoch: int, seed: int) -> list[np.ndarray]:
    perm = np.random.default_rng([seed, epoch]).permutation(n)
    return [perm[i : i + batch_size] for i in range(0, n, batch_size)]


def attach_lora(model: Any, settings: FinetuneSpec) -> Any:
    import torch
    from peft import LoraConfig, get_peft_model

    present = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    missing = [t for t in settings.target_modules if t not in present]
    if missing:
        raise FinetuneError(
            f"target_modules {missing} are not modules of this model "
            f"(fix: choose from the linear layers, e.g. {sorted(present & set(DEFAULT_TARGETS)) or sorted(present)[:8]})"
        )
    torch.manual_seed(settings.seed)
    from .models import PEFT_DEPRECATION

    config = LoraConfig(
        r=settings.rank,
        lora_alpha=settings.alpha,  # type: ignore[arg-type]  # peft annotates int; any scale works
        lora_dropout=settings.dropout,
        target_modules=list(settings.target_modules),
        task_type="CAUSAL_LM",
    )
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=PEFT_DEPRECATION, category=FutureWarning)
        return get_peft_model(model, config)


def _trainable(model: Any) -> list[tuple[str, Any]]:
    return [(n, p) for n, p in model.named_parameters() if p.requires_grad]


def save_checkpoint(path: Path, model: Any, optimizer: Any, step: int, history: list[dict[str, Any]]) -> None:
    tensors = {f"param.{n}": p.detach() for n, p in _trainable(model)}
    for i, (_, p) in enumerate(_trainable(model)):
        for k, v in optimizer.state.get(p, {}).items():
            tensors[f"opt.{i}.{k}"] = v.detach().reshape(-1) if k == "step" else v.detach()
    write_verified(path, tensors, {"step": step, "history": history})


def snapshot_file(checkpoint: str | Path, step: int) -> Path:
    """Where the adapter weights after ``step`` steps are kept, beside the resume checkpoint ``checkpoint``."""
    path = Path(checkpoint)
    return path.with_name(f"{path.stem}.step-{step}.safetensors")


def save_snapshot(path: Path, model: Any, step: int) -> None:
    write_verified(path, {f"param.{n}": p.detach() for n, p in _trainable(model)}, {"step": step})


def set_trainable(model: Any, tensors: dict[str, Any]) -> None:
    """Copy the adapter weights of a checkpoint or snapshot (``param.<name>``) into ``model``."""
    import torch

    with torch.no_grad():
        for n, p in _trainable(model):
            p.copy_(tensors[f"param.{n}"].to(p.device, p.dtype))


def load_checkpoint(path: Path, model: Any, optimizer: Any) -> tuple[int, list[dict[str, Any]]] | None:
    """Restore a checkpoint written by :func:`save_checkpoint`; None (with a warning naming it) if it is
    truncated or changed, so training starts again."""

    verified = read_verified(path)
    if verified is None:
        return None
    tensors, meta = verified
    params = _trainable(model)
    set_trainable(model, tensors)
    for i, (_, p) in enumerate(params):
        state = {k.split(".", 2)[2]: v.to(p.device) for k, v in tensors.items() if k.startswith(f"opt.{i}.")}
        if state:
            state["step"] = state["step"].reshape(())
            optimizer.state[p] = state
    return int(meta["step"]), list(meta["history"])


def _mean_loss(model: Any, data: list[tuple[list[int], list[int]]], batch_size: int, pad_id: int) -> float:
    """Assistant-token-weighted mean cross-entropy over ``data``."""
    import torch

    if not data:
        return float("nan")
    total, tokens = 0.0, 0
    model.eval()
    dev = input_device(model)
    with torch.no_grad():
        for i in range(0, len(data), batch_size):
            ids, mask, labels = _collate(data[i : i + batch_size], pad_id)
            n = int((labels[:, 1:] != -100).sum())
            if n == 0:
                continue
            out = model(input_ids=ids.to(dev), attention_mask=mask.to(dev), labels=labels.to(dev))
            total += float(out.loss) * n
            tokens += n
    return total / tokens if tokens else float("nan")


def _accumulate(
    model: Any, rows: list[tuple[list[int], list[int]]], micro: int, pad: int, dev: Any
) -> tuple[float, int]:
    """Gradients of one optimizer step over ``rows`` in passes of ``micro`` examples: each pass's mean loss weighted
    by its share of the step's assistant tokens, so the sum is the gradient of the whole batch's mean loss. Returns
    that loss and the step's assistant tokens."""
    counts = [sum(t != -100 for t in y[1:]) for _, y in rows]
    total = sum(counts)
    loss = 0.0
    for start in range(0, len(rows), micro):
        part = rows[start : start + micro]
        ids, mask, labels = _collate(part, pad)
        out = model(input_ids=ids.to(dev), attention_mask=mask.to(dev), labels=labels.to(dev))
        if len(part) == len(rows):  # one pass: exactly the loss (and bytes) of an unsplit batch
            out.loss.backward()
            return float(out.loss.detach()), total
        share = sum(counts[start : start + micro]) / max(total, 1)
        (out.loss * share).backward()
        loss += float(out.loss.detach()) * share
    return loss, total


CHECKPOINTING_PARAMETERS = 3e9
"""``gradient_checkpointing: auto`` turns it on for a base model of more parameters than this (estimated from its
config as ``12 x layers x hidden^2 + 2 x vocab x hidden``): at 7B and above activations, not weights, decide
whether a micro-batch fits."""


def checkpointing(settings: FinetuneSpec, model: Any) -> bool:
    """Whether this finetune recomputes activations in the backward pass (``gradient_checkpointing``)."""
    if settings.gradient_checkpointing in (True, False):
        return bool(settings.gradient_checkpointing)
    cfg = model.config
    layers, hidden = int(getattr(cfg, "num_hidden_layers", 0) or 0), int(getattr(cfg, "hidden_size", 0) or 0)
    vocab = int(getattr(cfg, "vocab_size", 0) or 0)
    return 12.0 * layers * hidden**2 + 2.0 * vocab * hidden > CHECKPOINTING_PARAMETERS


def train_lora(
    model: Any,
    tokenizer: Any,
    records: list[dict[str, Any]],
    settings: FinetuneSpec,
    *,
    checkpoint: str | Path | None = None,
    stop_after: int | None = None,
    snapshots: str | Path | None = None,
    keep: tuple[int, ...] = (),
    until: int | None = None,
) -> tuple[Any, pd.DataFrame, dict[str, Any]]:
    """Train LoRA adapters on ``records``; returns (peft model, loss history, summary).

    ``checkpoint``: a safetensors file to resume from and save to. ``stop_after`` ends the run after that
    many optimizer steps (as a kill would, after the checkpoint), for tests. ``snapshots``: after each step in
    ``keep`` the adapter weights are kept in :func:`snapshot_file` of it (the checkpoint variants read them).
    ``until``: training ends after that step (the adapter as it was then).
    """
    import torch

    encoded = [tokenize_chat(tokenizer, r["messages"], settings.max_length, settings.assistant_only) for r in records]
    kept = [i for i, (_, y) in enumerate(encoded) if any(t != -100 for t in y[1:])]
    if not kept:
        raise FinetuneError(
            f"no example has assistant tokens within max_length={settings.max_length} (fix: raise max_length)"
        )
    encoded = [encoded[i] for i in kept]
    train_idx, eval_idx = split_examples(len(encoded), settings.eval_fraction, settings.seed)
    train = [encoded[i] for i in train_idx]
    held = [encoded[i] for i in eval_idx]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    steps_per_epoch = math.ceil(len(train) / settings.batch_size)
    total = steps_per_epoch * settings.epochs

    if checkpointing(settings, model):
        # each block's activations are recomputed in the backward pass instead of kept: memory of one block
        enable = getattr(model, "activation_checkpointing_enable", None)  # transformers 5's name
        if enable is not None:
            enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:  # pragma: no cover - transformers 4
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
    model = attach_lora(model, settings)
    micro = min(settings.micro_batch_size or settings.batch_size, settings.batch_size)
    params = [p for _, p in _trainable(model)]
    optimizer = torch.optim.AdamW(params, lr=settings.lr, weight_decay=settings.weight_decay)
    step, history = 0, list[dict[str, Any]]()
    ckpt = Path(checkpoint) if checkpoint else None
    resumed = load_checkpoint(ckpt, model, optimizer) if ckpt is not None and ckpt.exists() else None
    if resumed is not None:
        step, history = resumed
        log.info("resumed from %s at step %d/%d", ckpt, step, total)
    if step == 0 and not history:
        history.append(
            {
                "step": 0,
                "epoch": 0.0,
                "split": "eval",
                "loss": _mean_loss(model, held, settings.batch_size, pad),
                "lr": 0.0,
                "tokens": 0,
            }
        )
    dev = input_device(model)
    progress = Progress("finetune", total, "steps")
    if step:
        progress.resume(step)
    if until is not None and not 0 < until <= total:
        raise FinetuneError(f"step {until} is outside this training's {total} steps (fix: a step from 1 to {total})")
    last = total if until is None else until
    for epoch in range(settings.epochs):
        for b, idx in enumerate(batch_order(len(train), settings.batch_size, epoch, settings.seed)):
            if epoch * steps_per_epoch + b < step:
                continue  # done before the resume point
            if step >= last:
                break
            model.train()
            lr = learning_rate(step, total, settings)
            for group in optimizer.param_groups:
                group["lr"] = lr
            rows = [train[int(i)] for i in idx]
            while True:  # on out-of-memory: the same step again in smaller micro-batches, the same effective batch
                torch.manual_seed(settings.seed + step)  # dropout masks depend on the step only
                try:
                    loss, tokens = _accumulate(model, rows, micro, pad, dev)
                    break
                except Exception as exc:  # noqa: BLE001 - only out-of-memory is retried
                    if not is_oom(exc) or micro == 1:
                        raise
                    optimizer.zero_grad(set_to_none=True)
                    if torch.cuda.is_available():
                        torch.cuda.empty_cache()
                    micro = max(1, micro // 2)
                    log.warning(
                        "finetune: out of memory at %d examples per pass, step %d again at %d (%d passes a step)",
                        micro * 2,
                        step + 1,
                        micro,
                        math.ceil(len(rows) / micro),
                    )
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            history.append(
                {
                    "step": step,
                    "epoch": step / steps_per_epoch,
                    "split": "train",
                    "loss": loss,
                    "lr": lr,
                    "tokens": tokens,
                }
            )
            if step % steps_per_epoch == 0 and held:
                history.append(
                    {
                        "step": step,
                        "epoch": step / steps_per_epoch,
                        "split": "eval",
                        "loss": _mean_loss(model, held, micro, pad),
                        "lr": lr,
                        "tokens": 0,
                    }
                )
            progress.update(1, note=f"loss {loss:.4f}, lr {lr:.2e}")
            if snapshots is not None and step in keep:
                save_snapshot(snapshot_file(snapshots, step), model, step)
            if ckpt is not None and (step % settings.save_steps == 0 or step == total):
                save_checkpoint(ckpt, model, optimizer, step, history)
            if stop_after is not None and step >= stop_after and step < total:
                raise KeyboardInterrupt(f"stopped after step {step} (stop_after)")
    if until is not None:
        progress.close(f"stopped at step {step} of {total}")
        model.eval()
        return model, pd.DataFrame(history), {"steps": total, "step": step}
    model.eval()
    hist = pd.DataFrame(history)
    train_loss = hist[hist["split"] == "train"]["loss"]
    eval_loss = hist[hist["split"] == "eval"]["loss"]
    progress.close(
        f"{total} steps on {len(train)} examples, held-out loss "
        + (f"{eval_loss.iloc[0]:.4f} -> {eval_loss.iloc[-1]:.4f}" if len(eval_loss) else "n/a (no held-out split)")
    )
    summary = {
        "n_examples": len(records),
        "n_used": len(encoded),
        "n_dropped_no_assistant_tokens": len(records) - len(encoded),
        "n_train": len(train),
        "n_eval": len(held),
        "steps": total,
        "steps_per_epoch": steps_per_epoch,
        "train_tokens": int(sum(sum(t != -100 for t in y[1:]) for _, y in train)),
        "first_train_loss": float(train_loss.iloc[0]) if len(train_loss) else None,
        "final_train_loss": float(train_loss.tail(steps_per_epoch).mean()) if len(train_loss) else None,
        "eval_loss_before": float(eval_loss.iloc[0]) if len(eval_loss) else None,
        "eval_loss_after": float(eval_loss.iloc[-1]) if len(eval_loss) else None,
        "trainable_parameters": int(sum(p.numel() for p in params)),
    }
    return model, hist, summary


def checkpoint_key(base_fingerprint: Any, data_sha256: str, settings: FinetuneSpec) -> str:
    """The resume checkpoint's key: the base model, the data and every setting that changes what is learnt (not how
    the steps are run: :data:`~traitscope.core.specs.FINETUNE_EXECUTION`)."""
    learnt = {k: v for k, v in as_dict(settings).items() if k not in FINETUNE_EXECUTION}
    if learnt.get("cpu_4bit_autograd", True):
        learnt.pop("cpu_4bit_autograd", None)  # the default: keys of runs from before the setting existed stay
    return content_hash(base_fingerprint, data_sha256, learnt, __version__)


def save_adapter(model: Any, out_dir: str | Path, provenance: dict[str, Any]) -> Path:
    """peft ``save_pretrained`` (adapter_model.safetensors + adapter_config.json) plus the provenance JSON,
    written into a temporary folder and renamed into place."""
    out = Path(out_dir)
    tmp = out.with_name(out.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    model.save_pretrained(tmp, safe_serialization=True)
    config_file = tmp / "adapter_config.json"
    if config_file.exists():  # peft writes target_modules from a set, in a per-process order: sort it
        adapter_config = json.loads(config_file.read_text())
        if isinstance(adapter_config.get("target_modules"), list):
            adapter_config["target_modules"] = sorted(adapter_config["target_modules"])
        write_text(config_file, json.dumps(adapter_config, indent=2, sort_keys=True) + "\n")
    write_text(tmp / PROVENANCE_FILE, json.dumps(provenance, indent=2, default=str) + "\n")
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    return out


def keep_4bit_differentiable(model: Any) -> None:
    """Keep bitsandbytes' CPU 4-bit layers on their differentiable kernel (``finetune.<name>.cpu_4bit_autograd``, on
    by default). In eval mode (the held-out loss) they repack their weights for a CPU inference kernel that has no
    autograd kernel registered; training through it afterwards makes bitsandbytes warn that the backward may be
    silently incorrect, and it is: the adapter learns far less (``benchmarks/qlora_cpu_autograd.py`` on the embedded
    model: held-out loss 3.21 -> 0.20 with this, 3.21 -> 2.53 without). ``tests/test_devices.py`` checks that the
    inference kernel never runs with this, and does without."""
    for module in model.modules():
        if hasattr(module, "support_avx512bf16_for_cpu"):
            module.support_avx512bf16_for_cpu = False


def _load_base(
    base_variant: ModelSpec, data_path: str | Path, settings: FinetuneSpec, name: str, resources_dir: str | Path
) -> tuple[Any, Any, ModelSpec, Any, list[dict[str, Any]], str]:
    """The base model ready to train (QLoRA prepared), its tokenizer, spec and fingerprint; the data and its sha256."""
    from .capture import model_fingerprint
    from .models import load_model
    from .sources import resolve_model_path

    records = read_chat_jsonl(data_path)
    data_sha = file_sha256(data_path)
    spec = base_variant
    if settings.quantization == "4bit":  # QLoRA: the base in NF4 (bitsandbytes, GPU or CPU), the adapter in full
        spec = spec._replace(quantization="4bit")
    model, tokenizer = load_model(spec, resources_dir=resources_dir, key=f"finetune.{name}.base")
    if settings.quantization == "4bit":
        from peft import prepare_model_for_kbit_training

        # gradient checkpointing is train_lora's (the setting, with transformers' current name and use_reentrant off),
        # not peft's default (always on, through the deprecated name and the reentrant variant: two warnings a run)
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
        if settings.cpu_4bit_autograd:
            keep_4bit_differentiable(model)
    fingerprint = model_fingerprint(spec, resolve_model_path(spec.model, resources_dir))
    return model, tokenizer, spec, fingerprint, records, data_sha


def checkpoint_path(
    checkpoint_dir: str | Path, name: str, fingerprint: Any, data_sha: str, settings: FinetuneSpec
) -> Path:
    """The resume checkpoint of one training run (its snapshots lie beside it: :func:`snapshot_file`)."""
    return Path(checkpoint_dir) / f"{name}-{checkpoint_key(fingerprint, data_sha, settings)}.safetensors"


def finetune(
    base_variant: ModelSpec,
    data_path: str | Path,
    settings: FinetuneSpec,
    out_dir: str | Path,
    *,
    name: str,
    checkpoint_dir: str | Path | None = None,
    resources_dir: str | Path = "resources",
    stop_after: int | None = None,
    keep_steps: tuple[int, ...] = (),
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Load the base model, train LoRA on the chat jsonl at ``data_path``, save the adapter with provenance. With a
    ``checkpoint_dir`` the run resumes after a kill, and the adapter after each step of ``keep_steps`` (the
    finetune's checkpoints) is kept there for :func:`checkpoint_adapter`."""
    import torch

    model, tokenizer, spec, fingerprint, records, data_sha = _load_base(
        base_variant, data_path, settings, name, resources_dir
    )
    ckpt = checkpoint_path(checkpoint_dir, name, fingerprint, data_sha, settings) if checkpoint_dir else None
    peft_model, history, summary = train_lora(
        model, tokenizer, records, settings, checkpoint=ckpt, stop_after=stop_after, snapshots=ckpt, keep=keep_steps
    )
    provenance = {
        "name": name,
        "base_model": spec.model,
        "base_variant": as_dict(base_variant),
        "settings": as_dict(settings),
        "data_sha256": data_sha,
        "data_file": str(data_path),
        "data_source": as_dict(settings.data),
        **summary,
        "traitscope": __version__,
        "torch": torch.__version__,
    }
    save_adapter(peft_model, out_dir, provenance)
    return history, provenance


def checkpoint_adapter(
    base_variant: ModelSpec,
    data_path: str | Path,
    settings: FinetuneSpec,
    final_adapter: str | Path,
    out_dir: str | Path,
    *,
    name: str,
    step: int,
    checkpoint_dir: str | Path,
    resources_dir: str | Path = "resources",
) -> dict[str, Any]:
    """The adapter of finetune ``name`` after ``step`` optimizer steps, saved as a peft adapter with provenance.

    It is the snapshot the training run kept (verified) when the step was listed then; otherwise (a checkpoint added
    later, ``python -m traitscope.clean``, another machine) training runs again to ``step`` from the same seed,
    resumably, which gives the same weights."""
    import torch

    key = f"finetune.{name}.checkpoints"
    final = json.loads((Path(final_adapter) / PROVENANCE_FILE).read_text())
    total = int(final["steps"])
    if not 0 < step <= total:
        raise FinetuneError(
            f"{key}: step {step} is beyond this training's {total} steps (fix: a step from 1 to {total})"
        )
    model, tokenizer, spec, fingerprint, records, data_sha = _load_base(
        base_variant, data_path, settings, name, resources_dir
    )
    ckpt = checkpoint_path(checkpoint_dir, name, fingerprint, data_sha, settings)
    snapshot = snapshot_file(ckpt, step)
    kept = read_verified(snapshot) if snapshot.exists() else None
    if kept is not None:
        peft_model = attach_lora(model, settings)
        set_trainable(peft_model, kept[0])
    else:
        log.warning("%s: the adapter after step %d is not in the cache (%s); training again to it", key, step, snapshot)
        peft_model, _, _ = train_lora(
            model,
            tokenizer,
            records,
            settings,
            checkpoint=ckpt.with_name(f"{ckpt.stem}.until-{step}.safetensors"),
            snapshots=ckpt,
            keep=(step,),
            until=step,
        )
    peft_model.eval()
    provenance = {
        "name": name,
        "step": step,
        "of_steps": total,
        "base_model": spec.model,
        "base_variant": as_dict(base_variant),
        "settings": as_dict(settings),
        "data_sha256": data_sha,
        "final_adapter": str(final_adapter),
        "traitscope": __version__,
        "torch": torch.__version__,
    }
    save_adapter(peft_model, out_dir, provenance)
    return provenance
