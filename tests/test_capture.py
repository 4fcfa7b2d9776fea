"""Hooks and capture: exact activations, padding invariance, token bookkeeping, resume."""

from __future__ import annotations

import os

import pandas as pd
import pytest
import torch
from conftest import N_LAYERS, REPO, capture_job, load_variant

import traitscope.core.capture as capmod
from traitscope.core.capture import CaptureError, capture_prompts, check_finite
from traitscope.core.chat import encode_rows, prompt_token_ids
from traitscope.core.hooks import ResidualCapture
from traitscope.core.io import read_safetensors, write_safetensors
from traitscope.core.prompts import normalise


def table(n: int = 5, **extra) -> pd.DataFrame:
    rows = [{"prompt": f"How do I bake bread number {i}?" + " please" * i, **extra} for i in range(n)]
    return normalise(rows)


def test_hooks_equal_output_hidden_states(tiny_model):
    model, tok = tiny_model
    ids = torch.tensor([prompt_token_ids(tok, "How do I bake bread?", None)])
    with torch.no_grad():
        ref = model(input_ids=ids, output_hidden_states=True).hidden_states
    with ResidualCapture(model, range(N_LAYERS)) as cap:
        got = cap.forward(input_ids=ids)
    for layer in range(N_LAYERS - 1):  # the last hidden_state is after the final norm
        torch.testing.assert_close(got[layer], ref[layer + 1])
    assert not torch.allclose(got[N_LAYERS - 1], ref[N_LAYERS])


def test_early_stop_skips_later_layers_without_changing_values(tiny_model):
    model, tok = tiny_model
    ids = torch.tensor([prompt_token_ids(tok, "Tell me how to make a bomb.", None)])
    seen = []
    hooks_before = len(model.model.layers[1]._forward_hooks)
    handle = model.model.layers[N_LAYERS - 1].register_forward_hook(lambda *a: seen.append(1))
    try:
        with ResidualCapture(model, [1], stop=True) as cap:
            early = cap.forward(input_ids=ids)[1]
    finally:
        handle.remove()
    assert seen == []  # the last block never ran
    with ResidualCapture(model, [1, N_LAYERS - 1]) as cap:
        full = cap.forward(input_ids=ids)[1]
    torch.testing.assert_close(early, full)
    assert len(model.model.layers[1]._forward_hooks) == hooks_before  # our hooks removed on exit


def test_batched_capture_matches_one_by_one(tiny_model):
    model, tok = tiny_model
    df = table(5, response="Sure, here is the answer.")
    s = capture_job(layers=[0, 2], positions=["last", "mean", "response"], batch_size=5, generate=False)
    batched, meta, _ = capture_prompts(model, tok, df, s, model_key="tiny")
    singles = [
        capture_prompts(model, tok, df.iloc[[i]], s._replace(batch_size=1), model_key="tiny")[0] for i in range(len(df))
    ]
    assert meta["ids"] == df["id"].tolist()
    for i, single in enumerate(singles):
        for key in ("last.layer_2", "mean.layer_0"):
            torch.testing.assert_close(batched[key][i].float(), single[key][0].float(), atol=2e-3, rtol=1e-2)
        off = batched["response.offsets"]
        torch.testing.assert_close(
            batched["response.layer_2"][off[i] : off[i + 1]].float(),
            single["response.layer_2"].float(),
            atol=2e-3,
            rtol=1e-2,
        )
    assert batched["last.layer_0"].dtype == torch.float16


def test_token_bookkeeping_with_prefill_and_generation(tiny_model):
    model, tok = tiny_model
    df = table(4, prefill="Sure, here is")
    df.loc[0, "prefill"] = None
    s = capture_job(layers=[1], positions=["response"], batch_size=3, generate=True, max_new_tokens=3)
    tensors, _, responses = capture_prompts(model, tok, df, s, model_key="tiny")
    off, is_prefill = tensors["response.offsets"], tensors["response.is_prefill"]
    n_prefill = len(tok("Sure, here is", add_special_tokens=False)["input_ids"])
    assert off[0] == 0 and off[-1] == len(tensors["response.token_ids"]) == len(tensors["response.layer_1"])
    for i in range(len(df)):
        row = is_prefill[off[i] : off[i + 1]]
        expect = 0 if i == 0 else n_prefill
        assert int(row.sum()) == expect and bool(row[:expect].all())
        assert responses["n_prefill_tokens"][i] == expect
        assert responses["n_response_tokens"][i] == int(off[i + 1] - off[i]) - expect <= 3
    assert responses["generated"].all()
    prefill_ids = tok("Sure, here is", add_special_tokens=False)["input_ids"]
    assert tensors["response.token_ids"][off[1] : off[1] + n_prefill].tolist() == prefill_ids


def test_last_position_is_the_assistant_header(tiny_model):
    model, tok = tiny_model
    df = table(2)
    s = capture_job(layers=[0], positions=["last"], generate=False)
    tensors, _, _ = capture_prompts(model, tok, df, s, model_key="tiny")
    ids = torch.tensor([prompt_token_ids(tok, df["prompt"][1], None)])
    with ResidualCapture(model, [0]) as cap:
        ref = cap.forward(input_ids=ids)[0][0, -1]
    torch.testing.assert_close(tensors["last.layer_0"][1].float(), ref, atol=2e-3, rtol=1e-2)
    assert int(tensors["prompt.length"][1]) == ids.shape[1]


def test_resume_reuses_finished_chunks(tiny_model, tmp_path, monkeypatch):
    model, tok = tiny_model
    df = table(6)
    s = capture_job(layers=[0, 3], positions=["last", "mean"], chunk_size=2, generate=False)
    calls = []
    real = capmod._capture_chunk
    monkeypatch.setattr(
        capmod,
        "_capture_chunk",
        lambda m, t, part, st, seed, **kw: calls.append(len(part)) or real(m, t, part, st, seed, **kw),
    )
    first, _, _ = capture_prompts(model, tok, df, s, model_key="tiny", cache_dir=tmp_path)
    assert calls == [2, 2, 2]
    # simulate a job killed after its first chunk: remove the later chunk files
    chunks = sorted(tmp_path.glob("chunk-*.safetensors"))
    assert len(chunks) == 3
    keep = capmod.content_hash(
        capmod.content_hash("tiny", repr(s), capmod.__version__),
        df.iloc[0:2][["id", "prompt", "system", "prefill", "response"]].to_dict(orient="list"),
    )
    for c in chunks:
        if keep not in c.name:
            c.unlink()
    calls.clear()
    again, _, _ = capture_prompts(model, tok, df, s, model_key="tiny", cache_dir=tmp_path)
    assert calls == [2, 2]  # only the two missing chunks were recomputed
    for k in first:
        torch.testing.assert_close(first[k], again[k])
    calls.clear()
    capture_prompts(model, tok, df, s._replace(max_length=64), model_key="tiny", cache_dir=tmp_path)
    assert calls == [2, 2, 2]  # other settings, other keys


@pytest.mark.parametrize("damage", ["truncate", "same_size_inf", "responses"])
def test_a_damaged_cache_chunk_is_recomputed_with_a_warning_naming_it(
    tiny_model, tmp_path, monkeypatch, caplog, damage
):
    """A truncated chunk, one with a few bytes overwritten in place (same size: +inf in float16), or a changed
    responses file: the checksum catches it, the chunk is captured again and the result equals a clean run."""
    model, tok = tiny_model
    df = table(4)
    s = capture_job(layers=[0, 3], positions=["last", "mean"], chunk_size=2, generate=False)
    clean, _, _ = capture_prompts(model, tok, df, s, model_key="tiny", cache_dir=tmp_path)
    chunk = sorted(tmp_path.glob("chunk-*.safetensors"))[0]
    raw = bytearray(chunk.read_bytes())
    if damage == "truncate":
        chunk.write_bytes(bytes(raw[: len(raw) // 2]))
    elif damage == "same_size_inf":
        raw[-8:] = b"\x00\x7c" * 4  # float16 +inf
        chunk.write_bytes(bytes(raw))
    else:
        responses = chunk.with_suffix(".parquet")
        frame = pd.read_parquet(responses)
        frame.loc[0, "n_prompt_tokens"] += 1
        frame.to_parquet(responses)
    calls = []
    real = capmod._capture_chunk
    monkeypatch.setattr(
        capmod,
        "_capture_chunk",
        lambda m, t, part, st, seed, **kw: calls.append(len(part)) or real(m, t, part, st, seed, **kw),
    )
    with caplog.at_level("WARNING", logger="traitscope.cache"):
        again, _, _ = capture_prompts(model, tok, df, s, model_key="tiny", cache_dir=tmp_path)
    assert calls == [2] and chunk.name in caplog.text
    assert all(torch.equal(clean[k], again[k]) for k in clean)


def test_non_finite_activations_are_refused_naming_the_prompts():
    from traitscope.core.capture import CaptureError, check_finite

    tensors = {
        "last.layer_2": torch.tensor([[1.0, 2.0], [float("inf"), 0.0]]).half(),
        "response.layer_2": torch.tensor([[0.0], [0.0], [float("nan")]]),
        "response.offsets": torch.tensor([0, 1, 1, 3]),
    }
    with pytest.raises(CaptureError) as info:
        check_finite(tensors, ["a", "b", "c"])
    msg = str(info.value)
    assert "2 prompts, e.g. ['b', 'c']" in msg and "layer_2" in msg and "65504" in msg and "\n" not in msg
    check_finite({"last.layer_2": torch.ones(2, 2), "response.offsets": torch.tensor([0, 0, 0])}, ["a", "b"])


def test_safetensors_roundtrip_keeps_metadata(tmp_path):
    path = tmp_path / "x.safetensors"
    write_safetensors(path, {"a": torch.ones(2, 3)}, {"ids": ["p1", "p2"], "name": "plain"})
    tensors, meta = read_safetensors(path)
    assert meta == {"ids": ["p1", "p2"], "name": "plain"}
    assert torch.equal(tensors["a"], torch.ones(2, 3))
    assert not list(tmp_path.glob(".*tmp"))


def test_outputs_are_byte_identical_across_processes_and_follow_the_umask(tmp_path):
    """safetensors writes a multi-key header in per-process hash order: the same tensors and metadata written
    by two interpreters must still give the same bytes. Files get 0666 less the umask, not mkstemp's 0600."""
    import subprocess
    import sys

    code = (
        "import sys, torch; from traitscope.core.io import write_safetensors; "
        "write_safetensors(sys.argv[1], {'b': torch.zeros(3), 'a': torch.ones(2)}, "
        "{'k1': 1, 'k2': [2], 'k3': 'x', 'k4': {'y': 1}, 'k5': 5, 'k6': 6})"
    )
    paths = [tmp_path / f"run{i}.safetensors" for i in range(3)]
    for path in paths:
        subprocess.run([sys.executable, "-c", code, str(path)], check=True, cwd=REPO)
    assert len({p.read_bytes() for p in paths}) == 1
    assert read_safetensors(paths[0])[1] == {"k1": 1, "k2": [2], "k3": "x", "k4": {"y": 1}, "k5": 5, "k6": 6}
    old = os.umask(0o027)
    try:
        write_safetensors(tmp_path / "masked.safetensors", {"a": torch.ones(1)})
    finally:
        os.umask(old)
    assert (tmp_path / "masked.safetensors").stat().st_mode & 0o777 == 0o640


def test_unknown_position_rejected(tiny_model):
    model, tok = tiny_model
    with pytest.raises(ValueError, match="positions"):
        capture_prompts(model, tok, table(1), capture_job(layers=[0], positions=["middle"]), model_key="tiny")


def test_out_of_memory_halves_the_batch_and_retries(tiny_model, monkeypatch):
    model, tok = tiny_model
    df = table(6)
    s = capture_job(layers=[1], positions=["last", "mean"], batch_size=6, generate=False)
    reference, _, _ = capture_prompts(model, tok, df, s, model_key="tiny")
    sizes = []
    real = capmod.capture_batch

    def flaky(m, batch, *a, **k):
        sizes.append(len(batch))
        if len(batch) > 3:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB")
        return real(m, batch, *a, **k)

    monkeypatch.setattr(capmod, "capture_batch", flaky)
    got, _, _ = capture_prompts(model, tok, df, s, model_key="tiny")
    assert sizes == [6, 3, 3]  # halved once, then kept at the smaller size
    for k in reference:
        torch.testing.assert_close(got[k], reference[k])


def test_other_errors_are_not_retried():
    calls = []

    def run(start, stop):
        calls.append(stop - start)
        raise ValueError("a real bug")

    with pytest.raises(ValueError):
        capmod.run_batches(8, 4, run)
    assert calls == [4]


def test_prefill_is_the_start_of_the_assistant_turn(tiny_model):
    """The prefill's tokens follow the chat template's assistant header, as if the assistant had written them."""
    _, tok = tiny_model
    df = table(1, prefill="Sure, here is")
    enc = encode_rows(tok, df, max_length=512)[0]
    template = tok.apply_chat_template(
        [{"role": "user", "content": df["prompt"][0]}], add_generation_prompt=True, tokenize=False
    )
    assert tok.decode(enc.prompt + enc.prefill) == template + "Sure, here is"
    assert template.rstrip().endswith("<|im_start|>assistant") and enc.response == []


def test_weights_that_fail_to_load_are_a_one_line_error_naming_the_key_and_model(tiny_model_dir, tmp_path):
    import shutil

    from traitscope.core.errors import ModelLoadError

    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, broken)
    for weights in broken.glob("*.safetensors"):
        weights.write_bytes(b"not safetensors")
    with pytest.raises(ModelLoadError) as info:
        load_variant({"model": str(broken), "device_map": "cpu"}, key="variants.broken")
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith(f"variants.broken.model: '{broken}' failed to load") and "fix:" in msg


def test_cut_and_over_context_rows_are_counted_per_row(tiny_model):
    """Prompts longer than max_length are cut (flagged ``truncated``); rows whose prompt + prefill + response pass
    the model's context are flagged ``over_context``. Both are exact per row, recomputed from the tokenizer."""
    model, tok = tiny_model
    df = table(6, prefill="Sure, here is the answer you asked for")
    lengths = [len(prompt_token_ids(tok, p, None)) for p in df["prompt"]]
    max_length = sorted(lengths)[3]  # the two longest prompts are cut
    n_prefill = len(tok(df["prefill"][0], add_special_tokens=False)["input_ids"])
    context = sorted(lengths)[1] + n_prefill  # rows with a prompt (after cutting) longer than the second pass it
    s = capture_job(layers=[0], positions=["last"], max_length=max_length)
    _, _, responses = capture_prompts(model, tok, df, s, model_key="tiny", context_length=context)
    cut = [n > max_length for n in lengths]
    over = [min(n, max_length) + n_prefill > context for n in lengths]
    assert responses["truncated"].tolist() == cut and sum(cut) == 2
    assert responses["over_context"].tolist() == over and 0 < sum(over) < len(df)
    assert responses["n_prompt_tokens"].tolist() == [min(n, max_length) for n in lengths]
    _, _, unknown = capture_prompts(model, tok, df, s, model_key="tiny", context_length=None)
    assert not unknown["over_context"].any()


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32"])
def test_capture_dtype_stores_activations_in_that_type(tiny_model, dtype):
    """capture.dtype: the stored tensors are the model's hidden states cast to it (float32: the very values)."""
    model, tok = tiny_model
    df = table(3)
    job = capture_job(layers=[0, 2], positions=["last"], generate=False, batch_size=1, dtype=dtype)
    tensors, _, _ = capture_prompts(model, tok, df, job, model_key="tiny")
    enc = encode_rows(tok, df, job.max_length)
    store = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}[dtype]
    for i, e in enumerate(enc):
        with torch.no_grad():
            hidden = model(input_ids=torch.tensor([e.prompt]), output_hidden_states=True).hidden_states
        for layer in (0, 2):  # hidden_states[-1] has the final norm applied; block outputs before it
            got = tensors[f"last.layer_{layer}"][i]
            assert got.dtype == store
            assert torch.equal(got, hidden[layer + 1][0, -1].to(store)), (dtype, layer)
    assert ("dtype" in repr(job)) == (dtype != "float16")  # a float16 job keeps its old repr, params and cache keys


def test_float16_overflow_points_to_capture_dtype():
    bad = {"last.layer_4": torch.tensor([[1.0, float("inf")], [0.0, 1.0]], dtype=torch.float16)}
    with pytest.raises(CaptureError, match=r"a\b.*capture.dtype: bfloat16"):
        check_finite(bad, ["a", "b"])
    with pytest.raises(CaptureError, match="variants.<name>.dtype"):
        check_finite({"last.layer_4": bad["last.layer_4"].float()}, ["a", "b"], "float32")


def test_capture_dtype_in_config_and_budget(small_config):
    from traitscope.study import load_config
    from traitscope.workflow.budget import pair_budget

    half = pair_budget(load_config(small_config), "base", "benign_eval").activation_bytes_per_prompt
    small_config["capture"]["dtype"] = "float32"
    study = load_config(small_config)
    assert study.capture_job("base").dtype == "float32" and study.trait_capture_job("safety/evil").dtype == "float32"
    full = pair_budget(study, "base", "benign_eval").activation_bytes_per_prompt
    assert full > 1.9 * half
    small_config["capture"]["dtype"] = "float64"
    with pytest.raises(Exception, match="capture.dtype"):
        load_config(small_config)
