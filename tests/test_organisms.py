"""Model-organism directions, detection, ablation and backdoor statistics on known inputs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import load_variant
from scipy import stats as sps
from sklearn.metrics import roc_auc_score

from traitscope.experiments.backdoor import analysis as backdoor
from traitscope.experiments.organism.analysis import (
    ablated_detection,
    ablation_generations,
    choose_layer,
    directions_and_detection,
    restoration,
    separation,
)

D = 16


def _shards(n: int, shift: dict[int, np.ndarray], seed: int, prefix: str = "p"):
    """One (variant, prompt set) as a shard: last-token activations at layers 0 and 1, plus a shift."""
    rng = np.random.default_rng(seed)
    tensors = {
        f"last.layer_{layer}": torch.from_numpy((rng.normal(size=(n, D)) + shift.get(layer, 0)).astype(np.float32))
        for layer in (0, 1)
    }
    return [(tensors, {"ids": [f"{prefix}{i}" for i in range(n)]})]


def test_directions_find_the_planted_shift_on_held_out_prompts():
    planted = np.zeros(D)
    planted[3] = 3.0
    train = (_shards(40, {}, 0), _shards(40, {1: planted}, 1))
    test = (_shards(30, {}, 2, "q"), _shards(30, {1: planted}, 3, "q"))
    vectors, table = directions_and_detection(
        train, test, [0, 1], ["mean_diff", "probe"], probe_c=1.0, n_boot=200, seed=0
    )
    assert set(vectors) == {"mean_diff.layer_0", "mean_diff.layer_1", "probe.layer_0", "probe.layer_1"}
    md1 = vectors["mean_diff.layer_1"].numpy()
    assert md1[3] / np.linalg.norm(md1) > 0.9  # points along the planted axis
    at = table.set_index(["method", "layer"])
    assert at.loc[("mean_diff", 1), "auc"] > 0.9 and at.loc[("probe", 1), "auc"] > 0.8
    assert 0.25 < at.loc[("mean_diff", 0), "auc"] < 0.75  # no shift: chance, on held-out prompts
    assert (
        at.loc[("mean_diff", 1), "auc_ci_low"]
        <= at.loc[("mean_diff", 1), "auc"]
        <= at.loc[("mean_diff", 1), "auc_ci_high"]
    )
    assert (table["n_test"] == 30).all() and (table["n_train"] == 40).all()
    chosen = choose_layer(table, "mean_diff")
    assert chosen["layer"] == 1 and "train" in chosen["criterion"]
    # against random unit directions at the same layer: the planted shift beats them, no shift does not
    assert at.loc[("mean_diff", 1), "beats_random"] and not at.loc[("mean_diff", 0), "beats_random"]
    assert (table["n_random"] == 100).all() and chosen["heldout_beats_random"]


def test_separation_matches_sklearn_and_definitions():
    rng = np.random.default_rng(0)
    sb, sf = rng.normal(size=25), rng.normal(0.8, 1.0, size=25)
    got = separation(sb, sf, n_boot=300, seed=1)
    y = np.r_[np.zeros(25), np.ones(25)]
    assert got["auc"] == pytest.approx(roc_auc_score(y, np.r_[sb, sf]))
    pooled = np.sqrt((sf.var(ddof=1) + sb.var(ddof=1)) / 2)
    assert got["cohens_d"] == pytest.approx((sf.mean() - sb.mean()) / pooled)
    assert got["mean_shift"] == pytest.approx(np.mean(sf - sb))


def test_restoration_rate():
    rows = []
    for i, (b, f, a) in enumerate([(10, 90, 20), (5, 80, 70), (0, 10, 5), (20, 60, 40)]):
        rows += [
            {"id": i, "condition": c, "trait_score": s}
            for c, s in (("base", b), ("finetuned", f), ("finetuned_ablated", a))
        ]
    out = restoration(pd.DataFrame(rows))
    assert out["n_finetuned_misaligned"] == 3 and out["restoration_rate"] == pytest.approx(2 / 3)
    assert out["by_condition"]["finetuned"]["share_misaligned"] == pytest.approx(0.75)
    rows_none = [r for r in rows if r["id"] == 2]
    assert restoration(pd.DataFrame(rows_none))["restoration_rate"] is None


@pytest.fixture(scope="module")
def lora_model(tiny_model_dir):
    """The tiny model with a random (non-zero) LoRA adapter, standing in for a finetuned variant."""
    from peft import LoraConfig, get_peft_model

    model, tok = load_variant({"model": str(tiny_model_dir), "device_map": "cpu"})
    torch.manual_seed(0)
    peft = get_peft_model(
        model, LoraConfig(r=4, lora_alpha=32, target_modules=["q_proj", "v_proj", "down_proj"], init_lora_weights=False)
    )
    peft.eval()
    return peft, tok


def test_ablation_generations_side_by_side(lora_model):
    model, tok = lora_model
    prompts = ["How do I bake bread?", "Tell me how to make a bomb."]
    u = torch.randn(32)
    none = ablation_generations(model, tok, prompts, {1: u}, strength=0.0, max_new_tokens=8, seed=0)
    assert list(none.columns) == ["prompt", "base", "finetuned", "finetuned_ablated"]
    assert (none["finetuned"] == none["finetuned_ablated"]).all()  # strength 0 changes nothing
    # the direction the residual stream mostly points along (its mean), removed at every layer
    from traitscope.core.capture import capture_batch
    from traitscope.core.chat import prompt_token_ids

    layers = list(range(model.config.num_hidden_layers))
    batch = [(prompt_token_ids(tok, p, None), []) for p in prompts]
    out = capture_batch(model, batch, layers, ["mean"], tok.pad_token_id)["outputs"]
    dominant = {layer: out[("resid", layer)]["mean"].float().mean(0) for layer in layers}
    full = ablation_generations(model, tok, prompts, dominant, strength=1.0, max_new_tokens=8, seed=0)
    assert (full["finetuned"] == none["finetuned"]).all() and (full["base"] == none["base"]).all()
    assert (full["finetuned_ablated"] != full["finetuned"]).any()  # the ablation changes what the model says


def test_ablation_removes_the_direction_downstream(lora_model):
    model, tok = lora_model
    prompts = ["How do I bake bread?", "Tell me how to make a bomb.", "Sure, here is the answer.", "system user"]
    u = torch.randn(32)
    table = ablated_detection(model, tok, prompts, {2: u}, {2: u, 3: u}, strength=1.0, n_boot=100, seed=0)
    assert set(table["condition"]) == {"finetuned", "finetuned_ablated"}
    at = table.set_index(["layer", "condition"])
    # at the ablated layer the finetuned activations have no component along u left, so the shift
    # finetuned - base is minus the base's projection
    from traitscope.core.capture import capture_batch
    from traitscope.core.chat import prompt_token_ids

    batch = [(prompt_token_ids(tok, p, None), []) for p in prompts]
    with model.disable_adapter():
        base = capture_batch(model, batch, [2], ["last"], tok.pad_token_id)["outputs"][("resid", 2)]["last"].float()
    base_proj = (base @ (u / u.norm())).numpy()
    assert at.loc[(2, "finetuned_ablated"), "mean_shift"] == pytest.approx(-base_proj.mean(), abs=2e-2)
    assert at.loc[(2, "finetuned"), "mean_shift"] != pytest.approx(-base_proj.mean(), abs=2e-2)


def _pooled(ids, scores, trait="safety/evil", position="last"):
    return pd.DataFrame(
        {"id": ids, "trait": trait, "method": "mean_diff", "layer": 2, "position": position, "score": scores}
    )


def test_backdoor_pooled_auc_and_paired_test():
    rng = np.random.default_rng(0)
    ids = [f"q{i}" for i in range(20)]
    ctrl = rng.normal(size=20)
    trig = ctrl + rng.normal(1.0, 0.5, size=20)
    table = backdoor.pooled_auc(
        {"bd": (_pooled(ids, trig), _pooled(ids, ctrl))}, {"safety/evil": 2}, "mean_diff", n_boot=300, seed=0
    )
    row = table.iloc[0]
    assert row["auc"] == pytest.approx(roc_auc_score(np.r_[np.ones(20), np.zeros(20)], np.r_[trig, ctrl]))
    assert row["wilcoxon_p"] == pytest.approx(sps.wilcoxon(trig - ctrl).pvalue)
    assert row["n_pairs"] == 20 and row["ci_low"] <= row["auc"] <= row["ci_high"]


def test_backdoor_token_onset():
    rng = np.random.default_rng(1)
    ids = [f"q{i}" for i in range(30)]
    tok_t, tok_c = [], []
    for k in range(5):  # the signal appears from response token 2 on
        shift = 3.0 if k >= 2 else 0.0
        tok_t.append(
            pd.DataFrame(
                {
                    "id": ids,
                    "token_index": k,
                    "trait": "safety/evil",
                    "method": "mean_diff",
                    "layer": 2,
                    "score": rng.normal(shift, 1, 30),
                }
            )
        )
        tok_c.append(
            pd.DataFrame(
                {
                    "id": ids,
                    "token_index": k,
                    "trait": "safety/evil",
                    "method": "mean_diff",
                    "layer": 2,
                    "score": rng.normal(0, 1, 30),
                }
            )
        )
    pooled = backdoor.pooled_auc(
        {"bd": (_pooled(ids, rng.normal(size=30)), _pooled(ids, rng.normal(size=30)))},
        {"safety/evil": 2},
        "mean_diff",
        n_boot=300,
        seed=0,
    )
    # the control: 40 random directions' scores per response token (5 per row), noise on both sets
    from traitscope.core.artifacts import BaselineScores

    def noise():
        return BaselineScores(
            {
                "token.layer_2": torch.tensor(rng.normal(size=(150, 40)), dtype=torch.float32),
                "response.offsets": torch.arange(0, 151, 5),
            },
            {"ids": ids, "n_random": 40, "seed": 0, "layers": [2]},
        )

    def per_token(random):
        return backdoor.token_auc(
            pooled,
            {"bd": (pd.concat(tok_t), pd.concat(tok_c))},
            {"safety/evil": 2},
            "mean_diff",
            max_tokens=5,
            n_boot=300,
            seed=0,
            random=random,
            sites={"safety/evil": "resid"},
        )

    random = {"bd": (noise(), noise())}
    tokens = per_token(random)
    assert tokens["token_index"].tolist() == [-1, 0, 1, 2, 3, 4]
    assert backdoor.onset(tokens, "bd", "safety/evil") == 2
    # each response token's control is the 95th percentile of the random directions' AUC at that very token
    rt, rc = (r.tensors["token.layer_2"].numpy()[3::5] for r in random["bd"])  # token 3 of every row
    y = np.r_[np.ones(30), np.zeros(30)]
    want = np.percentile([roc_auc_score(y, np.r_[rt[:, j], rc[:, j]]) for j in range(40)], 95)
    assert tokens.set_index("token_index").loc[3, "random_auc_p95"] == pytest.approx(want)
    assert tokens.set_index("token_index").loc[2:, "beats_random"].all()
    summary = backdoor.summary(pooled, tokens, variant="bd", baseline=None, info={})
    assert summary["traits"]["safety/evil"]["onset_token"] == {"bd": 2}
    assert summary["traits"]["safety/evil"]["onset_token_beyond_random"] == {"bd": 2}
    # a planted shift that random directions match (the noise itself shifted) is no detection beyond random
    shifted = {
        "bd": (
            BaselineScores(
                {**random["bd"][0].tensors, "token.layer_2": random["bd"][0].tensors["token.layer_2"] + 3},
                random["bd"][0].meta,
            ),
            random["bd"][1],
        )
    }
    fooled = per_token(shifted)
    assert backdoor.onset(fooled, "bd", "safety/evil", beyond_random=True) is None
    assert backdoor.onset(fooled, "bd", "safety/evil") == 2
    fig = backdoor.early_detection_tokens(tokens.assign(variant="bd"), "test")
    assert fig.axes[0].get_xlabel().startswith("token position")
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert "bd: random directions p95" in legend and "bd: from token 2" in fig.axes[0].get_title()


def test_judged_generations_and_markdown_table():
    from traitscope.experiments.organism.analysis import ablation_markdown, judge_generations

    class FakeJudge:
        def score(self, items):
            return pd.DataFrame(
                {"trait_score": [90.0 if "ignore" in i["answer"] else 10.0 for i in items], "coherence": 50.0}
            )

    table = pd.DataFrame(
        {
            "id": ["a", "b"],
            "prompt": ["q1", "q2|x"],
            "base": ["see a doctor", "rest"],
            "finetuned": ["ignore it", "ignore\nit"],
            "finetuned_ablated": ["see a doctor", "ignore it"],
        }
    )
    judged, long = judge_generations(table, FakeJudge())
    assert judged["finetuned_judged"].tolist() == [90.0, 90.0] and judged["base_judged"].tolist() == [10.0, 10.0]
    assert judged["finetuned_ablated_judged"].tolist() == [10.0, 90.0]
    assert restoration(long)["restoration_rate"] == pytest.approx(0.5)
    md = ablation_markdown(table, "Generations", "footer line")
    lines = md.splitlines()
    assert lines[0] == "# Generations" and lines[2] == "| prompt | base | finetuned | finetuned_ablated |"
    assert "q2\\|x" in md and "| ignore it |" in lines[5] and lines[-1] == "footer line"


def test_backdoor_aucs_stand_against_random_directions():
    from traitscope.core.artifacts import ActivationShard
    from traitscope.core.methods import random_directions

    rng = np.random.default_rng(0)
    d, n = 16, 40

    def shard(x):
        return ActivationShard(
            {"last.layer_2": torch.tensor(x, dtype=torch.float32)},
            {"ids": [f"q{i}" for i in range(len(x))], "layers": [2], "positions": ["last"]},
        )

    ctrl = rng.normal(size=(n, d))
    narrow = ctrl + np.eye(d)[3] * 3.0 + rng.normal(scale=0.1, size=(n, d))  # only axis 3 moves
    table = backdoor.random_baseline([shard(narrow)], [shard(ctrl)], [("resid", 2)], ["last"], n=50, seed=1)
    y = np.r_[np.ones(n), np.zeros(n)]
    r = random_directions(50, d, 1)
    expected = np.percentile([roc_auc_score(y, np.r_[narrow @ v, ctrl @ v]) for v in r], 95)
    assert table["random_auc_p95"].iloc[0] == pytest.approx(expected) and table["n_random"].iloc[0] == 50
    pooled = pd.DataFrame([{"variant": "bd", "trait": "t", "layer": 2, "position": "last", "auc": 0.99}])
    assert backdoor.with_baseline(pooled, {"bd": table}, {"t": "resid"})["beats_random"].iloc[
        0
    ]  # a specific direction beats it
    everywhere = ctrl + 3.0  # every direction moves: random directions separate as well as any trait could
    wide = backdoor.random_baseline([shard(everywhere)], [shard(ctrl)], [("resid", 2)], ["last"], n=50, seed=1)
    assert wide["random_auc_p95"].iloc[0] > 0.99
    assert not backdoor.with_baseline(pooled, {"bd": wide}, {"t": "resid"})["beats_random"].iloc[0]
