"""Every figure, built from small known inputs: the panels a reader sees, labelled axes, and n where it belongs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import figure_facts

from traitscope.core import plots
from traitscope.experiments.backdoor import analysis as backdoor
from traitscope.experiments.harm_separation import analysis as harm_separation
from traitscope.experiments.optimize import analysis as optimize
from traitscope.experiments.organism import analysis as organism
from traitscope.experiments.sae import features

rng = np.random.default_rng(0)
TRAITS = ["safety/evil", "safety/harm", "safety/refusal", "safety/sycophancy"]


def _extraction_summary():
    metrics = pd.DataFrame(
        [
            {
                "trait": t,
                "layer": layer,
                "method": m,
                "auc": rng.uniform(0.5, 1),
                "val_auc": rng.uniform(0.5, 1),
                "n_train": 24,
                "n_test": 8,
                "random_auc_p95": 0.7,
                "n_random": 100,
            }
            for t in TRAITS[:2]
            for layer in range(4)
            for m in ("mean_diff", "probe")
        ]
    )
    return (
        plots.extraction_summary(metrics, {TRAITS[0]: 1, TRAITS[1]: 3}, "base"),
        2,
        [
            "best layer 1, n_train=24, n_test=8",
            "best layer 3, n_train=24, n_test=8",
            "test (reported)",
            "train CV (chooses layer)",
            "random directions, 95th pct (n=100)",
        ],
    )


def _harm_separation():
    layer_auc = pd.DataFrame(
        {"layer": [0, 1, 0, 1], "auc": [0.6, 0.9, 0.7, 0.8], "data": ["extraction", "extraction", "eval", "eval"]}
    )
    scores = pd.DataFrame({"score": rng.normal(size=11), "group": ["harmful"] * 5 + ["harmless"] * 6})
    return (
        harm_separation.separation_figure(layer_auc, scores, harm_result(), "base"),
        2,
        [
            "harmful (n=5)",
            "harmless (n=6)",
            "random directions p95, extraction test split: 0.86",
            "random directions p95, eval sets: 0.84",
            "Layer 1: eval AUC 0.80 does not beat random p95 0.84",
            "shuffled labels: AUC 0.52, no better than random, as it must",
            "safety/harm: harmful vs harmless instructions, variant base (check failed)",
        ],
    )


def harm_result(**change):
    """A harm separation result as :func:`check_separation` writes it (the figure reads these keys)."""
    return {
        "trait": "safety/harm",
        "best_layer": 1,
        "min_auc": 0.9,
        "site": "resid",
        "eval_auc": 0.8,
        "passed": False,
        "extraction_baseline": {"random_auc_p95": 0.86},
        "eval_baseline": {"random_auc_p95": 0.84, "beats_random": False},
        "shuffled_label_check": {"auc": 0.52, "beats_random": False},
        **change,
    }


def _trait_scores():
    summary = pd.DataFrame(
        [
            {
                "trait": t,
                "prompt_set": s,
                "id": f"{s}{i}",
                "score": rng.normal(),
                "variant": v,
                "layer": 2,
                "position": "response_mean",
            }
            for t in TRAITS
            for s, n in (("benign", 3), ("harmful", 4))
            for i in range(n)
            for v in ("base", "tuned")
        ]
    )
    return plots.trait_scores(summary), 4, ["benign\n(n=3)", "harmful\n(n=4)"]


def _trait_scores_one_variant():  # a study that captures one variant (pointplot cannot dodge one hue)
    summary = pd.DataFrame(
        [
            {
                "trait": t,
                "prompt_set": s,
                "id": f"{s}{i}",
                "score": rng.normal(),
                "variant": "base",
                "layer": 2,
                "position": "response_mean",
            }
            for t in TRAITS[:2]
            for s, n in (("benign", 3), ("harmful", 4))
            for i in range(n)
        ]
    )
    return plots.trait_scores(summary), 2, ["benign\n(n=3)", "harmful\n(n=4)"]


def _steering_sweep():
    table = pd.DataFrame(
        [
            {"layer": layer, "coef": c, "trait_score": rng.uniform(0, 100), "coherence": 50.0}
            for layer in (1, 2)
            for c in (0, 1, 2)
            for _ in range(5)
        ]
    ).assign(vector="trait")
    control = pd.DataFrame(
        [{"layer": 1, "coef": c, "trait_score": 10.0, "coherence": 20.0, "vector": "random"} for c in (0, 1, 2)] * 5
    )
    return (
        plots.steering_sweep(pd.concat([table, control]), "safety/evil", "offline", "base"),
        2,
        [
            "on base (n=5 prompts per point",  # the control's rows are not counted as prompts
            "random direction, same norm (layer 1)",
            "for the random direction, coherence 50 vs 20",
        ],
    )


def _optimization_curves():
    history = pd.DataFrame(
        [
            {"trait": t, "search": s, "generation": g, "candidate": i, "fitness": rng.normal() + (s == "cma-es")}
            for t in TRAITS[:3]
            for s in ("cma-es", "random")
            for g in range(3)
            for i in range(4)
        ]
    )
    return (
        optimize.optimization_curves(history, "offline", {t: 3 for t in TRAITS[:3]}),
        3,
        ["population 4, n=3 training prompts", "random search best so far (same budget, n=12)", "vs random search"],
    )


def _loss_curve():
    history = pd.DataFrame(
        {
            "split": ["eval"] + ["train"] * 6 + ["eval"],
            "step": [0, 1, 2, 3, 4, 5, 6, 6],
            "loss": [3.0, 2.9, 2.5, 2.2, 2.0, 1.9, 1.8, 2.1],
        }
    )
    prov = {
        "n_train": 20,
        "n_eval": 4,
        "base_model": "/home/someone/models/tiny-llama",  # a machine path: never in a title
        "settings": {"base": "base", "rank": 4, "alpha": 8, "lr": 1e-4, "epochs": 2, "batch_size": 8, "seed": 0},
    }
    return (
        plots.loss_curve(history, "bad_advice", prov),
        1,
        ["train batches (n=20 examples)", "held-out (n=4 examples)", "LoRA finetune 'bad_advice' of variant base"],
    )


def _organism_detection():
    table = pd.DataFrame(
        [
            {
                "method": m,
                "layer": layer,
                "auc": 0.8,
                "auc_ci_low": 0.7,
                "auc_ci_high": 0.9,
                "cohens_d": 1.0,
                "n_test": 16,
                "random_auc_p95": 0.85,
                "n_random": 100,
                "beats_random": False,
            }
            for m in ("mean_diff", "probe")
            for layer in range(4)
        ]
    )
    return (
        organism.organism_detection(table, 2, "organism"),
        2,
        [
            "n=16 per model",
            "ablation layer 2",
            "random directions, 95th pct (n=100)",
            "at layer 2: NO direction beats random directions",
        ],
    )


def _backdoor_trait_comparison():
    auc = pd.DataFrame(
        [
            {
                "position": p,
                "variant": v,
                "trait": t,
                "auc": 0.7 if v == "base" else 0.9,
                "ci_low": 0.6,
                "ci_high": 0.95,
                "n_trigger": 20,
                "random_auc_p95": 0.8,
                "beats_random": v != "base",
            }
            for p in ("last", "mean")
            for v in ("backdoored", "base")
            for t in TRAITS[:2]
        ]
    )
    return (
        backdoor.backdoor_trait_comparison(auc, "backdoor"),
        2,
        ["last (n=20 prompt pairs)", "mean (n=20 prompt pairs)", "random directions, 95th pct", "beats", "no"],
    )


def _early_detection_tokens():
    tokens = pd.DataFrame(
        [
            {
                "trait": t,
                "variant": "bd",
                "token_index": i,
                "auc": 0.6,
                "ci_low": 0.5,
                "ci_high": 0.7,
                "n_trigger": 20 - i,
            }
            for t in TRAITS[:2]
            for i in range(-1, 4)
        ]
    )
    return backdoor.early_detection_tokens(tokens, "backdoor"), 2, ["(n>=17 pairs per token)"]


def _sae_features():
    feats = [
        {
            "feature": f,
            "cohens_d": 1.0 - f / 10,
            "d_ci_low": 0.5 - f / 10,
            "d_ci_high": 1.5 - f / 10,
            "auc_oriented": 0.8 - f / 50,
        }
        for f in range(4)
    ]
    layer = {
        "layer": 3,
        "n_a": 20,
        "n_b": 18,
        "n_report_a": 9,
        "n_report_b": 8,
        "features": feats,
        "trait_aucs": {"safety/evil": 0.6},
        "random_baseline": {"random_auc_p95": 0.75, "n_random": 100},
    }
    result = {
        "experiment": "backdoor",
        "position": "last",
        "model": "tiny",
        "layers": [layer, {**layer, "layer": 5}],
        "conditions": {"a": {"label": "trigger"}, "b": {"label": "control"}},
    }
    return (
        features.sae_features(result),
        4,
        [
            "trigger (n=20) vs control (n=18)",
            "report half (n=9 vs 8)",
            "random directions, 95th pct (n=100)",
            "feature 3",
            "safety/evil",
        ],
    )


FIGURES = {
    f.__name__.lstrip("_"): f
    for f in (
        _sae_features,
        _extraction_summary,
        _harm_separation,
        _trait_scores,
        _trait_scores_one_variant,
        _steering_sweep,
        _optimization_curves,
        _loss_curve,
        _organism_detection,
        _backdoor_trait_comparison,
        _early_detection_tokens,
    )
}


@pytest.mark.parametrize("name", list(FIGURES))
def test_no_figure_title_holds_a_machine_path(name):
    """Titles name variants; a local model's spec is an absolute path on one machine."""
    fig, _, _ = FIGURES[name]()
    text = figure_facts(fig)["text"]
    assert "/home/" not in text and "/tmp/" not in text, text
    plots.plt.close(fig)


@pytest.mark.parametrize("name", list(FIGURES))
def test_figure_has_its_panels_labels_and_n(name):
    fig, panels, n_texts = FIGURES[name]()
    facts = figure_facts(fig)
    assert facts["panels"] == panels, facts["titles"]
    assert all(facts["xlabels"]) and all(facts["ylabels"]), (facts["xlabels"], facts["ylabels"])
    assert facts["suptitle"] or all(facts["titles"])
    for text in n_texts:
        assert text in facts["text"], (text, facts["text"])
    plots.plt.close(fig)


@pytest.mark.parametrize("name", ["trait_scores", "steering_sweep"])
def test_bootstrap_error_bars_give_the_same_bytes_every_time(name, tmp_path):
    """seaborn draws CI bars by bootstrap: seeded, the same data give the same PNG."""
    global rng
    paths = []
    for i in range(2):
        rng = np.random.default_rng(0)
        fig, _, _ = FIGURES[name]()
        paths.append(tmp_path / f"{i}.png")
        plots.save(fig, paths[-1])
    assert paths[0].read_bytes() == paths[1].read_bytes()


def test_report_tables_are_pages_with_escaped_text(tmp_path):
    from traitscope.core.analyze import score_table
    from traitscope.core.io import write_html_table

    per_prompt = pd.DataFrame(
        {
            "variant": ["base"] * 3 + ["tuned"] * 3,
            "prompt_set": "qa",
            "trait": "safety/evil",
            "layer": 2,
            "position": "last",
            "score": [1.0, 2.0, 3.0, 10.0, 20.0, 30.0],
        }
    )
    table = score_table(per_prompt)
    assert table[["variant", "n", "mean", "median"]].values.tolist() == [
        ["base", 3, 2.0, 2.0],
        ["tuned", 3, 20.0, 20.0],
    ]
    assert table["sd"].tolist() == pytest.approx([1.0, 10.0])
    write_html_table(tmp_path / "t.html", table.assign(variant=["<script>x</script>", "b"]), "Scores <&>", "a note")
    page = (tmp_path / "t.html").read_text()
    assert "<script>x" not in page and "&lt;script&gt;x" in page and "Scores &lt;&amp;&gt;" in page
    assert "a note (2 rows)" in page and page.count("<tr") == 3
