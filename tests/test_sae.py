"""Sparse autoencoders (SAELens format, top-k training) and the feature comparison's selection/report split."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from traitscope.core.stats import cohens_d
from traitscope.experiments.sae.autoencoder import (
    SAEError,
    SparseAutoencoder,
    dead_share,
    fraction_of_variance_unexplained,
    train_topk,
)
from traitscope.experiments.sae.features import compare_features, direction_aucs, selection_half, summarise, top_tokens
from traitscope.experiments.sae.features import random_baseline as feature_baseline


def saelens_folder(path, architecture="topk", d_in=6, d_sae=10, seed=0, **cfg):
    """A folder as SAELens writes it (cfg.json with activation_fn_kwargs; the weights by safetensors directly)."""
    g = torch.Generator().manual_seed(seed)
    weights = {
        "W_enc": torch.randn(d_in, d_sae, generator=g),
        "b_enc": torch.randn(d_sae, generator=g) * 0.1,
        "W_dec": torch.randn(d_sae, d_in, generator=g),
        "b_dec": torch.randn(d_in, generator=g),
    }
    if architecture == "jumprelu":
        weights["threshold"] = torch.full((d_sae,), 0.3)
    path.mkdir(parents=True, exist_ok=True)
    save_file(weights, str(path / "sae_weights.safetensors"))
    (path / "cfg.json").write_text(
        json.dumps(
            {"d_in": d_in, "d_sae": d_sae, "architecture": architecture, "hook_name": "blocks.3.hook_resid_post", **cfg}
        )
    )
    return weights


def test_a_saelens_folder_loads_and_encodes_by_its_architecture(tmp_path):
    x = torch.randn(5, 6, generator=torch.Generator().manual_seed(1))
    w = saelens_folder(tmp_path / "topk", "topk", activation_fn_kwargs={"k": 3})
    sae = SparseAutoencoder.load(tmp_path / "topk")
    pre = (x - w["b_dec"]) @ w["W_enc"] + w["b_enc"]
    f = sae.encode(x)
    assert ((f > 0).sum(1) <= 3).all() and sae.k == 3
    for row in range(5):  # the kept entries are the 3 largest positive pre-activations, unchanged
        top = torch.relu(pre[row]).topk(3)
        assert torch.equal(f[row][top.indices], top.values)
    assert torch.allclose(sae.decode(f), f @ w["W_dec"] + w["b_dec"])
    w = saelens_folder(tmp_path / "std", "standard", apply_b_dec_to_input=False)
    assert torch.allclose(SparseAutoencoder.load(tmp_path / "std").encode(x), torch.relu(x @ w["W_enc"] + w["b_enc"]))
    w = saelens_folder(tmp_path / "jr", "jumprelu")
    pre = (x - w["b_dec"]) @ w["W_enc"] + w["b_enc"]
    assert torch.allclose(SparseAutoencoder.load(tmp_path / "jr").encode(x), pre * (pre > 0.3))


def test_save_writes_the_saelens_layout_and_round_trips(tmp_path):
    saelens_folder(tmp_path / "a", "topk", k=2)
    sae = SparseAutoencoder.load(tmp_path / "a")
    sae.save(tmp_path / "b")
    cfg = json.loads((tmp_path / "b/cfg.json").read_text())
    assert cfg["d_in"] == 6 and cfg["d_sae"] == 10 and cfg["architecture"] == "topk" and cfg["k"] == 2
    assert cfg["hook_name"] == "blocks.3.hook_resid_post"
    again = SparseAutoencoder.load(tmp_path / "b")
    x = torch.randn(4, 6)
    assert torch.equal(again.encode(x), sae.encode(x)) and again.W_dec.shape == (10, 6)


def test_gemma_scope_params_npz_loads_as_jumprelu_on_the_raw_activation(tmp_path):
    """Gemma Scope's layout (params.npz: W_enc, W_dec, b_enc, b_dec, threshold): a JumpReLU SAE that does not
    subtract b_dec from its input; the folder or the file loads, a pickled array is refused."""
    g = np.random.default_rng(0)
    w = {
        "W_enc": g.normal(size=(6, 10)).astype(np.float32),
        "W_dec": g.normal(size=(10, 6)).astype(np.float32),
        "b_enc": g.normal(size=10).astype(np.float32) * 0.1,
        "b_dec": g.normal(size=6).astype(np.float32),
        "threshold": np.full(10, 0.3, dtype=np.float32),
    }
    (tmp_path / "layer_3" / "width_16k").mkdir(parents=True)
    np.savez(tmp_path / "layer_3" / "width_16k" / "params.npz", **w)
    x = torch.randn(5, 6, generator=torch.Generator().manual_seed(1))
    pre = x @ torch.from_numpy(w["W_enc"]) + torch.from_numpy(w["b_enc"])
    for where in (tmp_path / "layer_3" / "width_16k", tmp_path / "layer_3" / "width_16k" / "params.npz"):
        sae = SparseAutoencoder.load(where)
        assert sae.architecture == "jumprelu" and not sae.apply_b_dec_to_input and (sae.d_in, sae.d_sae) == (6, 10)
        assert torch.allclose(sae.encode(x), pre * (pre > 0.3))
        assert torch.allclose(sae.decode(sae.encode(x)), sae.encode(x) @ sae.W_dec + torch.from_numpy(w["b_dec"]))
    np.savez(tmp_path / "params.npz", **{k: v for k, v in w.items() if k != "threshold"})
    with pytest.raises(SAEError, match=r"lacks \['threshold'\] \(fix: "):
        SparseAutoencoder.load(tmp_path)
    np.savez(tmp_path / "params.npz", **w, extra=np.array([{"code": 1}], dtype=object))
    with pytest.raises(SAEError, match="not a readable .npz"):
        SparseAutoencoder.load(tmp_path)


@pytest.mark.parametrize(
    "broken, message",
    [
        ("missing", "not a SAELens folder (needs cfg.json and sae_weights.safetensors) nor a Gemma Scope one"),
        ("arch", "architecture 'gated' is not supported"),
        ("json", "malformed JSON at line"),
        ("keys", "lacks ['b_dec']"),
    ],
)
def test_a_broken_sae_folder_is_one_line_with_the_fix(tmp_path, broken, message):
    folder = tmp_path / "sae"
    saelens_folder(folder, "gated" if broken == "arch" else "topk", k=2)
    if broken == "missing":
        (folder / "sae_weights.safetensors").unlink()
    if broken == "json":
        (folder / "cfg.json").write_text('{"d_in": 6,\n oops}')
    if broken == "keys":
        save_file({k: torch.zeros(2) for k in ("W_enc", "b_enc", "W_dec")}, str(folder / "sae_weights.safetensors"))
    with pytest.raises(SAEError) as info:
        SparseAutoencoder.load(folder)
    assert message in str(info.value) and "fix" in str(info.value) and "\n" not in str(info.value)


def sparse_data(n=3000, d=24, atoms=12, active=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    dictionary = torch.randn(atoms, d, generator=g)
    codes = torch.zeros(n, atoms)
    for i in range(n):
        idx = torch.randperm(atoms, generator=g)[:active]
        codes[i, idx] = torch.rand(active, generator=g) * 2 + 0.5
    return codes @ dictionary


def test_top_k_training_reconstructs_held_out_rows_and_is_seeded():
    x = sparse_data()
    sae, stats = train_topk(x, n_features=32, k=4, steps=800, batch_size=128, lr=3e-3, seed=0, holdout=0.1)
    assert stats["fvu_heldout"] < 0.25 and stats["l0_heldout"] <= 4.0  # a planted sparse code is recovered
    assert stats["n_heldout_rows"] == 300 and stats["n_train_rows"] == 2700
    assert 0.0 <= stats["dead_share_heldout"] < 0.5
    assert torch.allclose(sae.W_dec.norm(dim=1), torch.ones(32), atol=1e-5)  # unit decoder rows
    mean_only = SparseAutoencoder(sae.W_enc, sae.b_enc, torch.zeros_like(sae.W_dec), x.mean(0), "topk", 4)
    assert fraction_of_variance_unexplained(mean_only, x) == pytest.approx(1.0, abs=1e-4)  # FVU's definition
    same, stats2 = train_topk(x, n_features=32, k=4, steps=800, batch_size=128, lr=3e-3, seed=0, holdout=0.1)
    assert torch.equal(same.W_enc, sae.W_enc) and stats2 == stats
    never = SparseAutoencoder(sae.W_enc, sae.b_enc - 1e6, sae.W_dec, sae.b_dec, "standard")
    assert dead_share(never, x) == 1.0
    with pytest.raises(SAEError, match="too few"):
        train_topk(x[:10], n_features=8, k=2, steps=1, batch_size=256, lr=1e-3, seed=0, holdout=0.1)


def test_features_are_ranked_on_the_selection_half_and_reported_on_the_other():
    rng = np.random.default_rng(0)
    n, f = 200, 30
    ids = [f"p{i}" for i in range(n)]
    sel = selection_half(ids, seed=3)
    assert 0.35 < sel.mean() < 0.65 and np.array_equal(sel, selection_half(list(ids), seed=3))
    assert not np.array_equal(sel, selection_half(ids, seed=4))
    fa, fb = rng.normal(size=(n, f)), rng.normal(size=(n, f))
    fa[:, 7] += 1.5  # a planted difference: feature 7 is higher under condition a
    fb[:, 11] += 1.0  # and feature 11 under b
    top = compare_features(fa, fb, sel, sel, top=3, n_boot=200, seed=0)
    assert [r["feature"] for r in top][:2] == [7, 11]
    r7 = top[0]
    assert r7["cohens_d"] == pytest.approx(cohens_d(fa[~sel, 7], fb[~sel, 7]))  # reported on the report half only
    assert r7["d_ci_low"] < r7["cohens_d"] < r7["d_ci_high"] and r7["auc_oriented"] > 0.8
    assert top[1]["cohens_d"] < 0 and top[1]["auc_oriented"] > 0.7  # oriented by the selection half's sign
    # the report half cannot change the ranking: replace it with noise
    noisy_a, noisy_b = fa.copy(), fb.copy()
    noisy_a[~sel], noisy_b[~sel] = rng.normal(size=((~sel).sum(), f)), rng.normal(size=((~sel).sum(), f))
    assert [r["feature"] for r in compare_features(noisy_a, noisy_b, sel, sel, top=3, n_boot=200, seed=0)] == [
        r["feature"] for r in top
    ]


def test_directions_and_random_baseline_and_verdict():
    rng = np.random.default_rng(1)
    d = 16
    planted = np.zeros(d)
    planted[0] = 1.0
    xa, xb = rng.normal(size=(120, d)), rng.normal(size=(120, d))
    xa[:, 0] += 2.0
    sel = selection_half([f"q{i}" for i in range(120)], seed=0)
    aucs = direction_aucs(xa, xb, sel, sel, {"planted": planted, "flipped": -planted, "other": np.eye(d)[5]})
    assert aucs["planted"] == aucs["flipped"] > 0.85 and aucs["other"] < 0.75  # the sign comes from selection
    base = feature_baseline(xa, xb, sel, sel, 50, seed=0)
    assert base["n_random"] == 50 and base["random_auc_p95"] < aucs["planted"]
    verdict = summarise([{"feature": 1, "auc_oriented": 0.97}], {"planted": aucs["planted"]}, base)
    assert verdict["best_feature_beats_random"] and verdict["best_trait"] == "planted"
    weak = summarise([{"feature": 1, "auc_oriented": 0.5}], {}, base)
    assert not weak["best_feature_beats_random"] and weak["best_feature_percentile"] < 95


def test_top_tokens_are_the_most_active_response_tokens():
    sae = SparseAutoencoder(
        torch.eye(3), torch.zeros(3), torch.eye(3), torch.zeros(3), "standard", apply_b_dec_to_input=False
    )
    tokens = torch.tensor([[0.1, 0, 0], [0.9, 0, 0], [0.5, 2.0, 0], [0, 0, 0]])
    out = top_tokens(
        sae, tokens, torch.tensor([10, 11, 12, 13]), ["a:x", "a:x", "b:y", "b:y"], [0, 1], lambda i: f"<{i}>", 2
    )
    assert [t["token"] for t in out[0]] == ["<11>", "<12>"] and out[0][0]["id"] == "a:x"
    assert [t["token"] for t in out[1]] == ["<12>"]  # inactive tokens are not listed


def fake_sae_lens(monkeypatch, releases):
    """SAELens's registry as the package exposes it (get_pretrained_saes_directory -> release -> lookup), offline."""
    import sys
    import types
    from dataclasses import dataclass

    @dataclass
    class PretrainedSAELookup:
        release: str
        repo_id: str
        model: str
        conversion_func: str | None
        saes_map: dict

    module = types.ModuleType("sae_lens")
    module.get_pretrained_saes_directory = lambda: {r: PretrainedSAELookup(r, *v) for r, v in releases.items()}
    monkeypatch.setitem(sys.modules, "sae_lens", module)


def test_saelens_release_ids_resolve_through_its_registry_to_the_hub(tmp_path, monkeypatch):
    """``saelens:<release>/<sae_id>`` becomes the release's repository and the SAE's path there, downloaded as
    ``hub:`` is (here a local snapshot), in SAELens's layout or Gemma Scope's; unknown names and formats this loader
    cannot read are one line each."""
    import huggingface_hub

    from traitscope.experiments.sae.sources import resolve_source, saelens_hub

    fake_sae_lens(
        monkeypatch,
        {
            "gpt2-small-res-jb": (
                "jbloom/GPT2-Small-SAEs-Reformatted",
                "gpt2",
                None,
                {"blocks.3.hook_resid_pre": "blocks.3.hook_resid_pre"},
            ),
            "gemma-scope-2b-pt-res": (
                "google/gemma-scope-2b-pt-res",
                "gemma-2-2b",
                "gemma_2",
                {"layer_3/width_16k/average_l0_71": "layer_3/width_16k/average_l0_71"},
            ),
            "other-format": ("someone/saes", "llama", "dictionary_learning_1", {"l3": "l3"}),
        },
    )
    assert saelens_hub("saelens:gpt2-small-res-jb/blocks.3.hook_resid_pre") == (
        "hub:jbloom/GPT2-Small-SAEs-Reformatted/blocks.3.hook_resid_pre"
    )
    asked = []

    def snapshot(repo, allow_patterns=None):
        asked.append((repo, allow_patterns))
        return str(tmp_path / repo.replace("/", "--"))

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot)
    w = saelens_folder(tmp_path / "jbloom--GPT2-Small-SAEs-Reformatted" / "blocks.3.hook_resid_pre", "standard")
    folder = resolve_source("saelens:gpt2-small-res-jb/blocks.{layer}.hook_resid_pre", 3)
    assert asked[-1] == ("jbloom/GPT2-Small-SAEs-Reformatted", ["blocks.3.hook_resid_pre/*"])
    assert torch.equal(SparseAutoencoder.load(folder).W_enc, w["W_enc"])
    npz = tmp_path / "google--gemma-scope-2b-pt-res" / "layer_3" / "width_16k" / "average_l0_71"
    npz.mkdir(parents=True)
    np.savez(
        npz / "params.npz",
        W_enc=np.ones((4, 6)),
        W_dec=np.ones((6, 4)),
        b_enc=np.zeros(6),
        b_dec=np.zeros(4),
        threshold=np.ones(6),
    )
    sae = SparseAutoencoder.load(
        resolve_source("saelens:gemma-scope-2b-pt-res/layer_{layer}/width_16k/average_l0_71", 3)
    )
    assert sae.architecture == "jumprelu" and sae.d_sae == 6
    for spec, message in (
        ("saelens:nope/x", "SAELens has no release 'nope'"),
        ("saelens:gpt2-small-res-jb/blocks.9.x", "release gpt2-small-res-jb has no SAE 'blocks.9.x'"),
        ("saelens:other-format/l3", "stored in the 'dictionary_learning_1' format"),
    ):
        with pytest.raises(SAEError, match=re.escape(message)) as info:
            resolve_source(spec, 3)
        assert "(fix: " in str(info.value) and "\n" not in str(info.value)


def test_saelens_sources_without_the_package_say_how_to_get_it(monkeypatch):
    import sys

    from traitscope.experiments.sae.sources import resolve_source

    for name in (
        "sae_lens",
        "sae_lens.loading.pretrained_saes_directory",
        "sae_lens.toolkit.pretrained_saes_directory",
    ):
        monkeypatch.setitem(sys.modules, name, None)  # import fails
    with pytest.raises(SAEError, match=r"needs SAELens's registry of releases \(fix: pip install sae-lens"):
        resolve_source("saelens:gpt2-small-res-jb/blocks.3.hook_resid_pre", 3)


def test_the_workflow_waits_for_the_files_of_a_local_sae_in_either_layout(tmp_path):
    from traitscope.experiments.sae.sources import is_remote, local_files

    saelens_folder(tmp_path / "lens")
    (tmp_path / "scope").mkdir()
    np.savez(tmp_path / "scope" / "params.npz", W_enc=np.ones((2, 2)))
    assert local_files(str(tmp_path / "lens")) == [
        str(tmp_path / "lens/cfg.json"),
        str(tmp_path / "lens/sae_weights.safetensors"),
    ]
    assert local_files(str(tmp_path / "scope")) == [str(tmp_path / "scope/params.npz")]
    assert local_files(str(tmp_path / "scope/params.npz")) == [str(tmp_path / "scope/params.npz")]
    assert is_remote("hub:a/b/c") and is_remote("saelens:r/s") and not is_remote(str(tmp_path))
