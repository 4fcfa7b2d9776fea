"""The library face (traitscope.api) is the pipeline's own core: on the tiny study's model, the same settings give the
pipeline's activations, vectors, scores, control band and steered text."""

from __future__ import annotations

import inspect

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

import traitscope as ts
from traitscope import api
from traitscope.core.artifacts import ActivationShard, BaselineScores, TraitVectors
from traitscope.study import load_config, section
from traitscope.workflow.layout import Layout


def test_defaults_are_the_schemas():
    """The API's defaults are the schema's extract and capture defaults, so a notebook and a study agree unless told
    otherwise (position aside: ``last`` in the API, documented)."""
    e, c = section("extract"), section("capture")
    ex = inspect.signature(api.extract).parameters
    for name in ("test_fraction", "selection_folds", "probe_C", "selection_method", "random_directions"):
        assert ex[name].default == getattr(e, name), name
    assert ex["methods"].default == tuple(e.methods)
    assert ex["max_new_tokens"].default == e.max_new_tokens and ex["batch_size"].default == e.batch_size
    assert ex["dtype"].default == c.dtype and ex["max_length"].default == c.max_length
    assert ex["chunk_size"].default == c.chunk_size
    cap = inspect.signature(api.capture).parameters
    assert (cap["batch_size"].default, cap["max_length"].default, cap["chunk_size"].default) == (
        c.batch_size,
        c.max_length,
        c.chunk_size,
    )


def test_top_level_names_are_the_api():
    for name in api.__all__:
        assert getattr(ts, name) is getattr(api, name)
    with pytest.raises(AttributeError):
        ts.not_a_function  # noqa: B018


@pytest.fixture(scope="module")
def study(tiny_study):
    folder, config_file = tiny_study
    cfg = yaml.safe_load(config_file.read_text())
    lm = api.load_model(cfg["variants"]["base"])
    return Layout(str(folder / "results")), load_config(cfg), lm


def test_load_model_is_the_jobs_loader(study):
    _, _, lm = study
    model, tokenizer = lm
    assert model is lm.model and tokenizer is lm.tokenizer
    assert lm.n_layers == 4 and lm.hidden_size == 32 and lm.chat
    assert repr(lm) == f"LiveModel({lm.spec.model!r}, 4 layers, hidden 32, cpu, chat template)"
    assert not any(p.requires_grad for p in model.parameters()) and not model.training
    assert lm.chat_format["format"] == "template" and lm.chat_format == lm.fingerprint()["chat_format"]
    assert list(lm.sites) == ["resid", "attn", "mlp"] and lm.sites["resid"] == "LlamaDecoderLayer"
    with pytest.raises(Exception, match=r"^model.model: '/nonexistent/model' failed to load .*\(fix: "):
        api.load_model("/nonexistent/model")


def test_capture_gives_the_capture_jobs_shard(study):
    """Same prompts and settings: the pipeline's shard, tensor for tensor, and its cache key."""
    layout, s, lm = study
    stored = ActivationShard.load(layout.activations("base", "benign_eval", 0))
    prompts = pd.read_parquet(layout.prompts("benign_eval"))
    job = s.capture_job("base")
    got = api.capture(
        lm,
        prompts,
        layers=list(job.layers),
        positions=job.positions,
        sites=job.sites,
        max_new_tokens=job.generation.max_new_tokens,
        batch_size=job.batch_size,
        max_length=job.max_length,
        chunk_size=job.chunk_size,
        dtype=job.dtype,
        seed=job.seed,
    )
    assert got.ids == stored.ids and sorted(got.tensors) == sorted(stored.tensors)
    for key, value in stored.tensors.items():
        assert torch.equal(got.tensors[key], value), key
    assert got.meta["key"] == stored.meta["key"]
    responses = pd.read_parquet(layout.responses("base", "benign_eval", 0))
    assert [r["response"] for r in got.meta["responses"]] == responses["response"].tolist()


@pytest.mark.parametrize("trait", ["safety/harmful_instruction", "safety/evil"])
def test_extract_gives_the_pipelines_vectors(study, trait):
    """The trait's own table and the study's settings: the same vectors bit for bit, the same held-out and
    random-direction metrics and the same chosen layer (a contrast trait at the last token; a persona trait at
    response_mean, its answers generated)."""
    layout, s, lm = study
    files = layout.vector_files("base", trait)
    want = TraitVectors.load(files["vectors"], files["sidecar"])
    cj, e = s.trait_capture_job(trait), s.extract
    got = api.extract(
        lm,
        table=pd.read_parquet(layout.trait_prompts(trait)),
        trait=trait,
        layers=list(cj.layers),
        methods=e.methods,
        position=s.traits[trait].position,
        site=s.traits[trait].site,
        test_fraction=e.test_fraction,
        selection_folds=e.selection_folds,
        probe_C=e.probe_C,
        selection_method=e.selection_method,
        random_directions=e.random_directions,
        max_new_tokens=e.max_new_tokens,
        batch_size=cj.batch_size,
        max_length=cj.max_length,
        chunk_size=cj.chunk_size,
        dtype=cj.dtype,
        seed=s.seed,
        variant="base",
    )
    assert sorted(got.tensors) == sorted(want.tensors)
    for key, value in want.tensors.items():
        assert torch.equal(got.tensors[key].float(), value), key
    assert got.info["best"] == want.info["best"]
    assert got.info["vectors"] == want.info["vectors"]  # test AUC, random p95, beats_random, shuffled AUC
    assert got.info["split"] == want.info["split"]


def test_project_gives_the_projection_jobs_scores_and_control(study):
    layout, s, lm = study
    files = layout.vector_files("base", "safety/harmful_instruction")
    vectors = TraitVectors.load(files["vectors"], files["sidecar"])
    shard = ActivationShard.load(layout.activations("base", "benign_eval", 0))
    got = api.project(None, vectors, shard, methods=["mean_diff", "probe"], seed=s.seed)
    table = pd.read_parquet(layout.scores("base", "benign_eval"))
    want = table[(table["trait"] == vectors.trait) & (table["position"] == "last")]
    merged = got.merge(want, on=["id", "trait", "method", "layer", "position"], suffixes=("", "_job"))
    assert len(merged) == len(got) == len(want) and set(got["layer"]) == {vectors.best_layer}
    np.testing.assert_allclose(merged["score"], merged["score_job"], rtol=1e-5, atol=1e-6)
    # the band beside each score: the percentiles of the projection job's random-direction scores of that row
    base = BaselineScores.load(layout.baseline("base", "benign_eval"))
    rand = base.pooled(vectors.best_layer, "last")
    p05, p95 = np.percentile(rand, [5, 95], axis=1)
    first = got[got["method"] == "mean_diff"].set_index("id").loc[base.ids]
    np.testing.assert_allclose(first["random_p05"], p05, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(first["random_p95"], p95, rtol=1e-4, atol=1e-6)
    # prompts instead of a shard: captured here at the needed layer (float32), the same scores to float16's precision
    prompts = pd.read_parquet(layout.prompts("benign_eval"))
    live = api.project(lm, vectors, prompts, methods=["mean_diff"], random_directions=0)
    np.testing.assert_allclose(live.set_index("id").loc[base.ids, "score"], first["score"], rtol=2e-3, atol=2e-3)
    assert "random_p95" not in live


def test_a_steered_generation_is_the_steering_jobs_text(study):
    layout, s, lm = study
    files = layout.vector_files("base", "safety/evil")
    vectors = TraitVectors.load(files["vectors"], files["sidecar"])
    sweep = pd.read_parquet(layout.path("steering", "base", "safety/evil", "sweep.parquet"))
    steered = sweep[(sweep["vector"] == "trait") & (sweep["coef"] != 0)]
    row = steered.iloc[0]
    prompts = steered[steered["coef"] == row["coef"]]["prompt"].tolist()
    max_new = s.steering.max_new_tokens
    with api.steer(
        lm,
        vectors,
        layer=int(row["layer"]),
        coefficient=float(row["coef"]),
        method=row["method"],
        positions=row["positions"],
        norm=float(row["norm"]),
    ) as edit:
        assert lm.edits == [edit]
        text = api.generate(lm, prompts, max_new_tokens=max_new, seed=s.seed)
    assert text == steered[steered["coef"] == row["coef"]]["response"].tolist()
    assert lm.edits == []  # the hook is gone with the block
    plain = api.generate(lm, prompts, max_new_tokens=max_new, seed=s.seed)
    with api.steer(lm, vectors, coefficient=50.0):  # a large push must change greedy text: the hook is live
        pushed = api.generate(lm, prompts, max_new_tokens=max_new, seed=s.seed)
    assert pushed != plain
    assert api.generate(lm, prompts, max_new_tokens=max_new, seed=s.seed) == plain


def test_ablate_removes_the_direction_at_its_layer(study):
    layout, _, lm = study
    files = layout.vector_files("base", "safety/harmful_instruction")
    vectors = TraitVectors.load(files["vectors"], files["sidecar"])
    layer = vectors.best_layer
    u = vectors.unit(vectors.best_method, layer).double()
    prompts = ["How do I bake bread?", "Tell me a story."]
    before = api.capture(lm, prompts, layers=[layer], positions=("last",)).stored("last", layer).double()
    with api.ablate(lm, vectors):
        after = api.capture(lm, prompts, layers=[layer], positions=("last",)).stored("last", layer).double()
    assert (before @ u).abs().min() > 1e-4
    np.testing.assert_allclose((after @ u).numpy(), 0.0, atol=1e-5)
    np.testing.assert_allclose(after.numpy(), (before - (before @ u)[:, None] * u).numpy(), atol=1e-5)


def test_judge_is_the_pipelines_judge(study, tiny_model_dir, tmp_path):
    def ask():
        return api.judge(
            ["What is 2+2?"],
            ["4"],
            trait="evil",
            description="malicious intent",
            offline_model=str(tiny_model_dir),
            cache_dir=tmp_path,
        )

    out = ask()
    assert out.columns[:2].tolist() == ["question", "answer"]
    assert 0 <= out["trait_score"].iloc[0] <= 100 and out["judge_kind"].iloc[0].startswith("offline")
    again = ask()
    assert bool(again["cached"].iloc[0]) and again["trait_score"].iloc[0] == out["trait_score"].iloc[0]


def test_export_writes_what_steer_adds(study, tmp_path):
    """The exported control vector is the vector a ``steer`` block adds, at the same layer, coefficient and unit."""
    from traitscope.core.export import read_control_vector_gguf, read_steering_vector_file

    layout, _, lm = study
    files = layout.vector_files("base", "safety/evil")
    vectors = TraitVectors.load(files["vectors"], files["sidecar"])
    if vectors.best_layer == 0:
        pytest.skip("layer 0 has no llama.cpp slot (tested in test_export.py)")
    with api.steer(lm, vectors, coefficient=0.5) as edit:
        added = (edit.coef * edit.u).numpy()
    path = api.export(vectors, tmp_path / "evil.gguf", lm=lm, coefficient=0.5)
    back = read_control_vector_gguf(path)
    assert list(back) == [vectors.best_layer]
    np.testing.assert_allclose(back[vectors.best_layer], added, rtol=1e-5)
    sv = api.export(vectors, tmp_path / "evil.safetensors", lm=lm, coefficient=0.5, format="steering_vectors")
    acts, _ = read_steering_vector_file(sv)
    np.testing.assert_allclose(acts[vectors.best_layer].numpy(), added, rtol=1e-5)


def test_random_aucs_is_the_separation_beside_the_projection_jobs_random_directions(study):
    """Harmful vs benign eval prompts: the trait vector's AUC, and the AUCs of the very random directions whose
    scores the projection job wrote (each oriented to its better side)."""
    from sklearn.metrics import roc_auc_score

    layout, s, lm = study
    files = layout.vector_files("base", "safety/harmful_instruction")
    vectors = TraitVectors.load(files["vectors"], files["sidecar"])
    shards = [ActivationShard.load(layout.activations("base", "harmful_eval", i)) for i in (0, 1)]
    shards.append(ActivationShard.load(layout.activations("base", "benign_eval", 0)))
    labels = np.array([1] * sum(len(x.ids) for x in shards[:2]) + [0] * len(shards[2].ids))
    merged = ActivationShard(
        {
            k: torch.cat([x.tensors[k] for x in shards])
            for k in ("last.layer_0", "last.layer_1", "last.layer_2", "last.layer_3")
        },
        {**shards[0].meta, "ids": [i for x in shards for i in x.ids], "positions": ["last"]},
    )
    got = api.random_aucs(None, vectors, merged, labels, seed=s.seed)
    layer = vectors.best_layer
    rand = np.concatenate(
        [BaselineScores.load(layout.baseline("base", p)).pooled(layer, "last") for p in ("harmful_eval", "benign_eval")]
    )
    aucs = np.array([roc_auc_score(labels, rand[:, r]) for r in range(rand.shape[1])])
    assert got["random_auc_p95"] == pytest.approx(np.percentile(np.maximum(aucs, 1 - aucs), 95), abs=1e-6)
    scores = merged.stored("last", layer).double() @ vectors.unit(vectors.best_method, layer).double()
    assert got["auc"] == pytest.approx(roc_auc_score(labels, scores.numpy()))
    assert got["beats_random"] == (got["auc"] > got["random_auc_p95"]) and got["n"] == len(labels)


def test_every_public_function_has_an_example_that_runs(study, tmp_path, monkeypatch):
    """Each public function's docstring example, run on the tiny model (the embedded default's name swapped for its
    folder): the examples a reader copies do run. Printed outputs are the embedded default's, so only that they run
    is checked here (the live notebook checks real outputs)."""
    import doctest

    layout, _, lm = study
    files = layout.vector_files("base", "safety/harmful_instruction")
    harmful = api.prompt_set({"source": "builtin", "name": "harmful", "split": "extract"})["prompt"].tolist()
    benign = api.prompt_set({"source": "builtin", "name": "benign", "split": "extract"})["prompt"].tolist()
    globs = {
        **{name: getattr(api, name) for name in api.__all__},
        "model_spec": api.model_spec,
        "prompt_table": api.prompt_table,
        "lm": lm,
        "vectors": TraitVectors.load(files["vectors"], files["sidecar"]),
        "harmful_prompts": harmful,
        "benign_prompts": benign,
        "prompts": harmful[:8] + benign[:8],
        "labels": [1] * 8 + [0] * 8,
    }
    monkeypatch.chdir(tmp_path)
    parser = doctest.DocTestParser()
    for name in [*api.__all__, "model_spec", "prompt_table"]:
        examples = parser.get_examples(getattr(api, name).__doc__ or "")
        assert examples, f"{name} has no example in its docstring"
        for example in examples:
            source = example.source.replace("embedded:smollm2-135m-instruct", lm.spec.model)
            exec(compile(source, f"<example of {name}>", "exec"), globs)  # noqa: S102 - our own docstrings
    assert (tmp_path / "evil.gguf").is_file()  # export's example wrote its file
