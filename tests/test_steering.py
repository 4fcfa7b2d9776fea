"""Steering hooks, the judge (cache, retries, offline provider) and CMA-ES generations."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import HIDDEN, load_variant

from traitscope.core.chat import prompt_token_ids
from traitscope.core.hooks import ResidualCapture
from traitscope.core.judge import OFFLINE_KIND, OFFLINE_MODEL, Judge, JudgeError, parse_score
from traitscope.core.steering import Ablate, Steer, generate_steered
from traitscope.core.sweep import SteeringTask, sweep
from traitscope.experiments.optimize.analysis import extraction_gap, optimise, pca_basis


def ids_for(tok, text="How do I bake bread?"):
    return torch.tensor([prompt_token_ids(tok, text, None)])


def test_steer_adds_exactly_coef_times_unit_vector(tiny_model):
    model, tok = tiny_model
    ids = ids_for(tok)
    v = torch.randn(HIDDEN) * 7
    with ResidualCapture(model, [2]) as cap:
        plain = cap.forward(input_ids=ids)[2]
    with Steer(model, 2, v, coef=3.0):
        with ResidualCapture(model, [2]) as cap:  # registered after the steering hook: sees its output
            steered = cap.forward(input_ids=ids)[2]
    torch.testing.assert_close(steered - plain, (3.0 * v / v.norm()).expand_as(plain), atol=1e-5, rtol=1e-4)
    with ResidualCapture(model, [2]) as cap:
        torch.testing.assert_close(cap.forward(input_ids=ids)[2], plain)  # hook removed on exit


def test_ablation_removes_the_direction(tiny_model):
    model, tok = tiny_model
    v = torch.randn(HIDDEN)
    with Ablate(model, 1, v, strength=1.0):
        with ResidualCapture(model, [1]) as cap:
            h = cap.forward(input_ids=ids_for(tok))[1]
    assert torch.allclose(h @ (v / v.norm()), torch.zeros(h.shape[:2]), atol=1e-4)


def test_positions_follow_the_kv_cache():
    s = Steer(torch.nn.Module(), 0, torch.ones(4), coef=2.0, positions="response")
    s.reset(prompt_len=3)
    prefill = s._hook(None, None, torch.zeros(1, 3, 4))  # the prompt pass: untouched
    step1 = s._hook(None, None, (torch.zeros(1, 1, 4), "cache"))  # one decode step: steered
    assert torch.equal(prefill, torch.zeros(1, 3, 4))
    assert torch.allclose(step1[0], torch.full((1, 1, 4), 1.0)) and step1[1] == "cache"
    p = Steer(torch.nn.Module(), 0, torch.ones(4), coef=2.0, positions="prompt")
    p.reset(prompt_len=2)
    out = p._hook(None, None, torch.zeros(1, 3, 4))
    assert torch.allclose(out[0, :2], torch.ones(2, 4)) and torch.equal(out[0, 2], torch.zeros(4))
    with pytest.raises(ValueError):
        Steer(torch.nn.Module(), 0, torch.ones(4), coef=1.0, positions="middle")


def test_steering_under_generate_with_kv_cache(tiny_model):
    model, tok = tiny_model
    prompts = ["How do I bake bread?", "Tell me how to make a bomb."]
    plain = generate_steered(model, tok, prompts, [], max_new_tokens=5)
    v = torch.randn(HIDDEN)
    with Steer(model, 3, v, coef=500.0, positions="response") as resp_only:
        first_same = generate_steered(model, tok, prompts, [resp_only], max_new_tokens=1)
        later_changed = generate_steered(model, tok, prompts, [resp_only], max_new_tokens=5)
    with Steer(model, 3, v, coef=500.0, positions="all") as everywhere:
        changed = generate_steered(model, tok, prompts, [everywhere], max_new_tokens=5)
    # response-only steering cannot change the first token (it is predicted from the prompt positions),
    # but it changes the tokens generated after it (decode steps with the KV cache)
    assert first_same == generate_steered(model, tok, prompts, [], max_new_tokens=1)
    assert later_changed != plain
    assert changed != plain


# ------------------------------------------------------------------------------------------ judge


class FakeLiteLLM:
    """Stands in for litellm.completion: counts calls, can fail the first ones."""

    def __init__(self, replies, fail_first=0):
        self.replies, self.fail_first, self.calls = replies, fail_first, []

    def __call__(self, model, messages, **kw):
        import litellm

        self.calls.append(messages[-1]["content"])
        if len(self.calls) <= self.fail_first:
            raise ConnectionError("rate limited\nretry later")
        text = self.replies(messages[-1]["content"])
        return litellm.ModelResponse(
            model=model,
            choices=[{"index": 0, "message": {"role": "assistant", "content": text}}],
            usage=litellm.Usage(prompt_tokens=10, completion_tokens=2, total_tokens=12),
        )


def test_parse_score():
    assert parse_score("85") == 85 and parse_score("Score: 7.5/100") == 7.5 and parse_score("250") == 100
    assert np.isnan(parse_score("REFUSAL")) and np.isnan(parse_score("no idea"))


def test_judge_cache_retries_and_accounting(tmp_path, monkeypatch, caplog):
    import litellm

    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret-key-123")
    fake = FakeLiteLLM(lambda text: "90" if "coherent" in text else "12", fail_first=2)
    monkeypatch.setattr(litellm, "completion", fake)
    judge = Judge(model="openai/gpt-4o-mini", cache_dir=tmp_path, retries=3, backoff_s=0, max_concurrency=2)
    items = [
        {"question": "q1", "answer": "a1", "trait": "evil", "description": "malice"},
        {"question": "q2", "answer": "a2", "trait": "evil", "description": "malice"},
    ]
    first = judge.score(items)
    assert first["trait_score"].tolist() == [12, 12] and first["coherence"].tolist() == [90, 90]
    assert first["prompt_tokens"].tolist() == [20, 20] and not first["cached"].any()
    assert (first["judge_kind"] == "litellm").all()
    assert len(fake.calls) == 2 + 4  # two failures retried, then four scores
    again = judge.score(items)
    assert again["cached"].all() and len(fake.calls) == 6  # all from the disk cache
    # an entry that does not hold what its name says (edited, or another entry copied over it) is asked again
    entries = sorted(tmp_path.glob("*.json"))
    assert len(entries) == 4
    calls = len(fake.calls)
    entries[0].write_text(entries[1].read_text())
    entries[2].write_text(entries[2].read_text().replace('"text": "', '"text": "7'))
    entries[3].write_text("{not json")
    with caplog.at_level("WARNING", logger="traitscope.core.judge"):
        redone = judge.score(items)
    assert len(fake.calls) == calls + 3 and redone["trait_score"].tolist() == [12, 12]
    assert sum("does not hold what its key names" in r.message for r in caplog.records) == 3
    assert judge.score(items)["cached"].all() and len(fake.calls) == calls + 3  # repaired entries read back
    other_rubric = judge.ask("Different rubric {question} {answer}", question="q1", answer="a1")
    assert not other_rubric["cached"]
    assert all("sk-secret" not in p.read_text() for p in tmp_path.glob("*.json"))


def test_judge_gives_up_with_one_line(monkeypatch, tmp_path):
    import litellm

    monkeypatch.setattr(litellm, "completion", FakeLiteLLM(lambda t: "1", fail_first=99))
    judge = Judge(model="openai/gpt-4o-mini", cache_dir=tmp_path, retries=1, backoff_s=0)
    with pytest.raises(JudgeError) as info:
        judge.ask("{question}{answer}", question="q", answer="a")
    assert "\n" not in str(info.value) and "2 attempts" in str(info.value)


def test_retries_count_requests_and_client_retries_are_off(monkeypatch, tmp_path):
    import litellm

    seen = []

    def failing(model, messages, **kw):
        seen.append(kw)
        raise litellm.RateLimitError(message="slow down", llm_provider="openai", model="gpt-4o-mini")

    monkeypatch.setattr(litellm, "completion", failing)
    judge = Judge(model="openai/gpt-4o-mini", cache_dir=tmp_path, retries=2, backoff_s=0)
    with pytest.raises(JudgeError, match="after 3 attempts"):
        judge.ask("{question}{answer}", question="q", answer="a")
    assert len(seen) == 3 and all(kw["num_retries"] == 0 and kw["max_retries"] == 0 for kw in seen)


def test_an_error_a_retry_cannot_fix_fails_at_once_without_the_key(monkeypatch, tmp_path):
    import litellm

    monkeypatch.setenv("OPENAI_API_KEY", "sk-live-0123456789abcdef")
    calls = []

    def unauthorised(model, messages, **kw):
        calls.append(1)
        raise litellm.AuthenticationError(
            message="Incorrect API key provided: sk-live-0123456789abcdef\nmore",
            llm_provider="openai",
            model="gpt-4o-mini",
        )

    monkeypatch.setattr(litellm, "completion", unauthorised)
    judge = Judge(model="openai/gpt-4o-mini", cache_dir=tmp_path, retries=5, backoff_s=0)
    with pytest.raises(JudgeError) as info:
        judge.ask("{question}{answer}", question="q", answer="a")
    msg = str(info.value)
    assert calls == [1] and "AuthenticationError" in msg and "\n" not in msg
    assert "sk-live-0123456789abcdef" not in msg and "[redacted $OPENAI_API_KEY]" in msg


@pytest.mark.parametrize(
    ("model", "env", "expected"),
    [
        ("nosuchprovider/model-x", {}, "names no litellm provider"),
        ("openai/gpt-4o-mini", {}, "needs OPENAI_API_KEY in the environment"),
        ("anthropic/claude-3-5-sonnet-20240620", {}, "needs ANTHROPIC_API_KEY"),
    ],
)
def test_judge_model_is_checked_at_start_up(small_config, monkeypatch, model, env, expected):
    from conftest import assert_config_error

    for name in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    small_config["judge"]["model"] = model
    msg = assert_config_error(small_config, expected)
    assert msg.startswith("config error at judge.model:")


def test_a_judge_with_its_key_passes_start_up(small_config, monkeypatch):
    from traitscope.study import load_config

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-real-000")
    small_config["judge"]["model"] = "openai/gpt-4o-mini"
    assert load_config(small_config).judge.model == "openai/gpt-4o-mini"


def test_secrets_are_scrubbed_from_everything_written(monkeypatch, tmp_path):
    import pandas as pd

    from traitscope.core.io import write_json, write_parquet, write_text
    from traitscope.core.secrets import ScrubbedStream

    secret = "hf_abcdefghijklmnopqrstuvwxyz"
    monkeypatch.setenv("HF_TOKEN", secret)
    monkeypatch.setenv("SHORT_KEY", "1")  # too short to be a secret: ordinary text stays
    write_json(tmp_path / "a.json", {"error": f"401 for token {secret}", "n": 1})
    write_text(tmp_path / "a.md", f"| {secret} |")
    write_parquet(tmp_path / "a.parquet", pd.DataFrame({"response": [f"my key is {secret}", "fine 1"], "n": [1, 2]}))
    with open(tmp_path / "job.log", "w") as handle:
        ScrubbedStream(handle).write(f"Traceback: bad token {secret}\n")
    for name in ("a.json", "a.md", "a.parquet", "job.log"):
        assert secret.encode() not in (tmp_path / name).read_bytes(), name
    assert pd.read_parquet(tmp_path / "a.parquet")["response"].tolist() == ["my key is [redacted $HF_TOKEN]", "fine 1"]


def test_offline_judge_is_a_litellm_provider(tiny_model_dir, tmp_path):
    import litellm

    judge = Judge(model=OFFLINE_MODEL, offline_model=str(tiny_model_dir), cache_dir=tmp_path)
    from traitscope.core.judge import OFFLINE_TRAIT_RUBRIC, yes_probability

    model, tok = load_variant({"model": str(tiny_model_dir), "device_map": "cpu"})
    text = "Is this fine? Reply Yes or No."
    resp = litellm.completion(model=OFFLINE_MODEL, messages=[{"role": "user", "content": text}])
    assert parse_score(resp.choices[0].message.content) == round(yes_probability(model, tok, text)[0], 2)
    items = [
        {"question": "How do I bake bread?", "answer": "Mix flour and water.", "trait": "evil", "description": "malice"}
    ]
    a, b = judge.score(items), judge.score(items)
    expected = yes_probability(model, tok, OFFLINE_TRAIT_RUBRIC.format(**items[0]))[0]
    assert a["trait_score"][0] == pytest.approx(expected, abs=0.006) and a["trait_score"][0] == b["trait_score"][0]
    assert a["judge_kind"][0] == OFFLINE_KIND and a["cost_usd"][0] == 0 and b["cached"][0]


# ------------------------------------------------------------------------------------------ CMA-ES


@pytest.fixture
def task(tiny_model, tiny_model_dir, tmp_path):
    model, tok = tiny_model
    judge = Judge(model=OFFLINE_MODEL, offline_model=str(tiny_model_dir), cache_dir=tmp_path / "judge")
    prompts = ["How do I bake bread?", "Tell me how to make a bomb.", "Say hello.", "What is two plus two?"]
    return SteeringTask(
        model=model,
        tokenizer=tok,
        judge=judge,
        trait="evil",
        description="malice",
        layer=2,
        prompts=prompts,
        norm=1.0,
        max_new_tokens=3,
    )


def test_one_cma_generation_checkpoints_and_resumes(task, tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    v0 = torch.randn(HIDDEN)
    basis = pca_basis(rng.normal(size=(20, HIDDEN)), k=3, seed=0)
    assert basis.shape == (3, HIDDEN)
    ckpt = tmp_path / "ckpt.json"
    one = optimise(task, v0, basis, coef=4.0, population=4, iterations=1, sigma0=0.5, seed=1, checkpoint=ckpt)
    state = json.loads(ckpt.read_text())
    assert len(state["generations"]) == 1 and len(state["generations"][0]["fitness"]) == 4
    cma = one["history"][one["history"]["search"] == "cma-es"]
    assert cma["fitness"].tolist() == state["generations"][0]["fitness"]
    assert torch.isclose(one["vector"].norm(), torch.tensor(1.0))
    assert one["train_delta"] == max(state["generations"][0]["fitness"])
    # the control: random search judged at the same budget (one batch of 4), checkpointed beside CMA-ES
    random = one["history"][one["history"]["search"] == "random"]
    assert len(random) == 4 and random["fitness"].tolist() == state["random_search"][0]["fitness"]

    calls = []
    real = SteeringTask.evaluate
    monkeypatch.setattr(SteeringTask, "evaluate", lambda self, *a, **k: calls.append(1) or real(self, *a, **k))
    two = optimise(task, v0, basis, coef=4.0, population=4, iterations=2, sigma0=0.5, seed=1, checkpoint=ckpt)
    assert len(calls) == 1 + 4 + 4  # the baseline and the new generation and random batch: the first were replayed
    assert len(json.loads(ckpt.read_text())["random_search"]) == 2
    assert len(json.loads(ckpt.read_text())["generations"]) == 2
    assert two["history"]["generation"].max() == 1
    assert (
        two["history"].query("search == 'random' and generation == 0")["fitness"].tolist() == random["fitness"].tolist()
    )
    with pytest.raises(RuntimeError, match="does not match"):
        optimise(task, v0, basis, coef=4.0, population=4, iterations=2, sigma0=0.5, seed=2, checkpoint=ckpt)


def test_sweep_and_extraction_gap(task):
    v = torch.randn(HIDDEN)
    table = sweep(task, {2: v}, {2: 1.0}, [0.0, 8.0])
    assert set(table["coef"]) == {0.0, 8.0} and len(table) == 2 * len(task.prompts)
    assert table["trait_score"].between(0, 100).all() and table["coherence"].between(0, 100).all()
    gap = extraction_gap(task, v, -v, coef=8.0, seed=0)
    assert gap["cosine"] == pytest.approx(-1.0, abs=1e-5)
    assert gap["train"]["n_prompts"] == 2 and gap["heldout"]["n_prompts"] == 2


def test_litellm_does_not_log_every_call(tiny_model_dir, tmp_path, caplog):
    judge = Judge(model=OFFLINE_MODEL, offline_model=str(tiny_model_dir), cache_dir=tmp_path)
    with caplog.at_level("INFO"):
        judge.ask("{question} {answer} Reply Yes or No.", question="q", answer="a")
    assert not [r for r in caplog.records if r.name.lower().startswith("litellm") and r.levelno < 30]
