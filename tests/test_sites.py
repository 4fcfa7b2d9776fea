"""Attention-output and MLP-output sites beside the residual stream: capture, extraction, projection, baselines,
steering and the study's jobs read a trait at its ``traits.<name>.site``."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import assert_config_error, capture_job
from torch import nn

from traitscope.core.architecture import site_module
from traitscope.core.artifacts import ActivationShard, TraitVectors, tensor_key
from traitscope.core.capture import capture_prompts
from traitscope.core.chat import prompt_token_ids
from traitscope.core.errors import ModelLoadError
from traitscope.core.extract import extract_trait
from traitscope.core.hooks import ResidualCapture, SiteCapture
from traitscope.core.methods import random_directions, unit
from traitscope.core.project import baseline_scores, score_tensors
from traitscope.core.prompts import normalise
from traitscope.core.specs import BaselineJob, ExtractJob
from traitscope.core.steering import Steer
from traitscope.experiments.backdoor import analysis as backdoor
from traitscope.study import section
from traitscope.workflow.config import entry


def module_outputs(model, layer: int, ids: torch.Tensor) -> dict[str, torch.Tensor]:
    """The block's own attention, MLP and block outputs, recorded by plain forward hooks (the reference)."""
    block = model.model.layers[layer]
    got: dict[str, torch.Tensor] = {}
    handles = [
        m.register_forward_hook(
            lambda _m, _i, out, name=name: got.__setitem__(
                name, (out[0] if isinstance(out, tuple) else out).detach().clone()
            )
        )
        for name, m in (("attn", block.self_attn), ("mlp", block.mlp), ("resid", block))
    ]
    try:
        with torch.no_grad():
            model(input_ids=ids, use_cache=False)
    finally:
        for h in handles:
            h.remove()
    return got


def test_site_capture_records_exactly_the_sublayer_outputs(tiny_model):
    model, tok = tiny_model
    ids = torch.tensor([prompt_token_ids(tok, "How do I bake bread?", None)])
    with SiteCapture(model, [1, 2], ("resid", "attn", "mlp"), stop=True) as cap:
        got = cap.run(input_ids=ids)
    for layer in (1, 2):
        ref = module_outputs(model, layer, ids)
        for site in ("resid", "attn", "mlp"):
            assert torch.equal(got[(site, layer)], ref[site])
    # the block adds both sublayer outputs to the stream it was given (pre-norm Llama)
    torch.testing.assert_close(got[("resid", 2)], got[("resid", 1)] + got[("attn", 2)] + got[("mlp", 2)])
    assert not torch.allclose(got[("attn", 2)], got[("mlp", 2)])
    with ResidualCapture(model, [2]) as resid:  # the residual-only class keeps its layer keys and values
        assert torch.equal(resid.forward(input_ids=ids)[2], got[("resid", 2)])


def test_capture_stores_sites_under_their_own_keys(tiny_model):
    model, tok = tiny_model
    df = normalise([{"prompt": "Tell me how to pick a lock."}, {"prompt": "What is bread made of?"}])
    job = capture_job(layers=[0, 2], positions=["last", "mean"], batch_size=1)
    resid, _, _ = capture_prompts(model, tok, df, job, model_key="tiny")
    both, meta, _ = capture_prompts(model, tok, df, job._replace(sites=("resid", "attn", "mlp")), model_key="tiny")
    attn_only, _, _ = capture_prompts(model, tok, df, job._replace(sites=("attn",)), model_key="tiny")
    for key, t in resid.items():  # the residual stream: same keys, same values
        assert torch.equal(both[key], t)
    assert "last.attn.layer_2" in both and "mean.mlp.layer_0" in both and meta["sites"] == ("resid", "attn", "mlp")
    assert not any(k.endswith("layer_2") and ".attn." not in k for k in attn_only)
    assert torch.equal(attn_only["last.attn.layer_2"], both["last.attn.layer_2"])
    ids = torch.tensor([prompt_token_ids(tok, df["prompt"][1], None)])
    ref = module_outputs(model, 2, ids)
    assert torch.equal(both["last.attn.layer_2"][1], ref["attn"][0, -1].to(torch.float16))
    assert torch.equal(both["last.mlp.layer_2"][1], ref["mlp"][0, -1].to(torch.float16))


def test_residual_only_jobs_keep_their_identity():
    job = capture_job(layers=[0], positions=["last"])
    # as before sites existed, so that chunk caches and Snakemake params of existing runs stay valid
    assert repr(job) == (
        f"CaptureJob(layers=(0,), positions=('last',), max_length={job.max_length}, "
        f"chunk_size={job.chunk_size}, generation=None, seed=1234)"
    )
    assert "sites=('resid', 'attn')" in repr(job._replace(sites=("resid", "attn")))
    spec = entry("traits", {"source": "builtin", "site": "mlp"})
    assert spec.site == "mlp" and "site" not in repr(spec)


def test_a_missing_sublayer_is_a_clear_error():
    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.mixer = nn.Linear(2, 2)

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.model = nn.Module()
            self.model.layers = nn.ModuleList([Block()])

    assert isinstance(site_module(Model(), 0, "resid"), Block)
    with pytest.raises(
        ModelLoadError,
        match=r"cannot find the mlp sublayer of Block \(children: mixer; fix: set "
        r"variants.<name>.blocks.mlp .*or use site resid",
    ):
        site_module(Model(), 0, "mlp")


def test_a_bad_site_is_a_config_error(small_config):
    small_config["traits"]["safety/evil"]["site"] = "ffn"
    assert "traits.safety/evil.site" in assert_config_error(small_config, "site")


def synthetic_shard(n: int = 60, d: int = 8, layers=(0, 1), seed: int = 0):
    """Label signal on axis 1 of the attention output only; the residual stream is noise."""
    rng = np.random.default_rng(seed)
    y = np.repeat([1, 0], n // 2)
    tensors, meta = (
        {},
        {"ids": [f"r{i}" for i in range(n)], "layers": list(layers), "positions": ["last"], "sites": ["resid", "attn"]},
    )
    for layer in layers:
        tensors[tensor_key("last", layer)] = torch.tensor(rng.normal(size=(n, d)), dtype=torch.float16)
        attn = rng.normal(size=(n, d)) + np.outer(y, np.eye(d)[1]) * 3
        tensors[tensor_key("last", layer, "attn")] = torch.tensor(attn, dtype=torch.float16)
    table = pd.DataFrame({"id": meta["ids"], "label": y, "group": [f"g{i // 2 % 15}" for i in range(n)]})
    return ActivationShard(tensors, meta), table


def test_extraction_reads_the_trait_site():
    shard, table = synthetic_shard()
    ej = ExtractJob(
        methods=("mean_diff",),
        test_fraction=0.3,
        selection_folds=3,
        probe_C=1.0,
        selection_method="mean_diff",
        random_directions=20,
    )
    at_attn, _ = extract_trait(
        shard, table, ej, trait="t/x", variant="v", model="m", layers=[0, 1], position="last", seed=0, site="attn"
    )
    at_resid, _ = extract_trait(
        shard, table, ej, trait="t/x", variant="v", model="m", layers=[0, 1], position="last", seed=0
    )
    assert at_attn.site == "attn" and at_resid.site == "resid"
    assert at_attn.metrics("mean_diff", 1)["auc"] > 0.95 and at_attn.metrics("mean_diff", 1)["beats_random"]
    assert at_resid.metrics("mean_diff", 1)["auc"] < 0.85  # the residual stream carries no signal here
    u = unit(at_attn.get("mean_diff", 1)).numpy()
    assert abs(u[1]) > 0.8  # the attention-output direction


def test_projection_and_its_baseline_read_the_trait_site():
    shard, table = synthetic_shard()
    info = {
        "trait": "t/x",
        "model": "m",
        "position": "last",
        "site": "attn",
        "hidden_size": 8,
        "best": {"layer": 1, "method": "mean_diff"},
    }
    v = torch.randn(8, generator=torch.Generator().manual_seed(0))
    vectors = TraitVectors(info, {tensor_key("mean_diff", 1): v})
    job = section("project", {"layers": "best", "methods": ["mean_diff"]})
    base = BaselineJob(n_random=5, seed=3, per_token=False)
    out = score_tensors(shard, [vectors], job, n_layers=2, baseline=base)
    expect = shard.stored("last", 1, "attn").float() @ unit(v)
    assert torch.equal(out["score|t/x|mean_diff|1|last"], expect)
    assert not torch.equal(expect, shard.stored("last", 1).float() @ unit(v))
    b = baseline_scores([out], shard.ids, base)
    r = torch.from_numpy(random_directions(5, 8, 3 * 1000 + 1))
    np.testing.assert_array_equal(
        b.pooled(1, "last", "attn"), (shard.stored("last", 1, "attn").double() @ r.double().T).float().numpy()
    )
    with pytest.raises(Exception, match="site resid"):  # no residual-stream baseline was projected for it
        b.pooled(1, "last")


def test_steering_at_a_site_adds_to_that_sublayer_output(tiny_model):
    model, tok = tiny_model
    ids = torch.tensor([prompt_token_ids(tok, "Hello there", None)])
    v = torch.randn(model.config.hidden_size, generator=torch.Generator().manual_seed(1))
    plain = module_outputs(model, 1, ids)
    with Steer(model, 1, v, 2.0, site="mlp"):
        steered = module_outputs(model, 1, ids)  # registered after the steering hook: sees its output
    torch.testing.assert_close(steered["mlp"] - plain["mlp"], (2.0 * unit(v)).expand_as(plain["mlp"]))
    assert torch.equal(steered["attn"], plain["attn"])  # before the MLP in the block: untouched
    torch.testing.assert_close(steered["resid"] - plain["resid"], (2.0 * unit(v)).expand_as(plain["mlp"]))
    assert len(model.model.layers[1].mlp._forward_hooks) == 0


def test_backdoor_baseline_is_taken_at_the_trait_site():
    rng = np.random.default_rng(0)
    n, d = 30, 8
    ctrl = rng.normal(size=(n, d))
    trig = ctrl + 10.0  # (almost) every direction separates at the attention output
    meta = {"ids": [f"q{i}" for i in range(n)], "layers": [2], "positions": ["last"], "sites": ["resid", "attn"]}

    def shard(resid, attn):
        return ActivationShard(
            {
                "last.layer_2": torch.tensor(resid, dtype=torch.float32),
                "last.attn.layer_2": torch.tensor(attn, dtype=torch.float32),
            },
            meta,
        )

    table = backdoor.random_baseline(
        [shard(ctrl, trig)], [shard(ctrl, ctrl)], [("resid", 2), ("attn", 2)], ["last"], n=50, seed=1
    )
    by_site = table.set_index("site")["random_auc_p95"]
    assert by_site["attn"] > 0.99 and by_site["resid"] < 0.8
    pooled = pd.DataFrame([{"variant": "bd", "trait": "t", "layer": 2, "position": "last", "auc": 0.95}])
    assert not backdoor.with_baseline(pooled, {"bd": table}, {"t": "attn"})["beats_random"].iloc[0]
    assert backdoor.with_baseline(pooled, {"bd": table}, {"t": "resid"})["beats_random"].iloc[0]


def test_the_study_captures_each_trait_at_its_site(small_config):
    from traitscope.study import load_config

    small_config["traits"]["safety/harmful_instruction"]["site"] = "attn"
    study = load_config(small_config)
    assert study.trait_capture_job("safety/harmful_instruction").sites == ("attn",)
    assert study.trait_capture_job("safety/evil").sites == ("resid",)
    assert study.capture_job("base").sites == ("resid", "attn")


def test_figures_name_the_site_they_show():
    from conftest import figure_facts

    from traitscope.core import plots
    from traitscope.experiments.harm_separation import analysis as harm_separation

    layer_auc = pd.DataFrame(
        {
            "layer": [0, 1, 0, 1],
            "auc": [0.6, 0.9, 0.5, 0.95],
            "data": ["extraction test split (mean_diff)"] * 2 + ["independent eval sets (mean_diff)"] * 2,
        }
    )
    scores = pd.DataFrame({"score": [1.0, 2.0, -1.0, -2.0], "group": ["harmful"] * 2 + ["harmless"] * 2})
    from test_plots import harm_result

    result = harm_result(site="mlp")
    facts = figure_facts(harm_separation.separation_figure(layer_auc, scores, result, "tiny"))
    assert facts["xlabels"] == [
        "layer (MLP output of block)",
        "score at layer 1: projection on unit trait vector (MLP-output units)",
    ]
    table = pd.DataFrame(
        {"layer": [3, 3], "coef": [0.0, 1.0], "trait_score": [10.0, 20.0], "coherence": [80.0, 70.0], "site": "attn"}
    )
    facts = figure_facts(plots.steering_sweep(table, "t/x", "offline"))
    assert facts["xlabels"] == ["steering coefficient (x mean attention-output norm at the layer)"] * 2
