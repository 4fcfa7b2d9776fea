"""The activation budget printed at start-up: per (variant, set), per variant, total, and a warning above the limit."""

from __future__ import annotations

import numpy as np
import torch

from traitscope.core.artifacts import ActivationShard, TraitVectors
from traitscope.core.io import write_parquet
from traitscope.core.project import project_shard
from traitscope.study import load_config, section
from traitscope.workflow.budget import SCORE_ROW_BYTES, TOKEN_EXTRA_BYTES, pair_budget, report, study_budget


def test_budget_counts_activations_and_scores_per_prompt(small_config):
    small_config["capture"]["positions"] = ["last", "mean", "response"]
    study = load_config(small_config)
    b = pair_budget(study, "base", "benign_eval")
    # tiny model: 4 layers of hidden 32 in float16 at 2 pooled positions + 4 response tokens (max_new_tokens)
    assert b.activation_bytes_per_prompt == 4 * 32 * 2 * (2 + 4) + TOKEN_EXTRA_BYTES * 4
    # 2 traits x 2 methods x 1 (best) layer x (last, mean, response_mean + 4 token scores); and the random baseline:
    # 100 directions x up to 2 best layers (one per trait) x 3 pooled positions x float32
    assert b.score_bytes_per_prompt == 2 * 2 * 1 * (3 + 4) * SCORE_ROW_BYTES + 100 * 2 * 3 * 4
    assert b.rows == 20 and not b.streamed
    assert b.written == 20 * (b.activation_bytes_per_prompt + b.score_bytes_per_prompt)
    # a trait read at the attention output: the prompt sets store that site beside the residual stream
    small_config["traits"]["safety/evil"]["site"] = "attn"
    at_attn = pair_budget(load_config(small_config), "base", "benign_eval")
    assert at_attn.activation_bytes_per_prompt == 2 * 4 * 32 * 2 * (2 + 4) + TOKEN_EXTRA_BYTES * 4
    del small_config["traits"]["safety/evil"]["site"]
    small_config["project"]["layers"] = "neighbours"  # the default: counted as three layers per trait
    assert (
        pair_budget(load_config(small_config), "base", "benign_eval").score_bytes_per_prompt
        == 3 * (b.score_bytes_per_prompt - 100 * 2 * 3 * 4) + 100 * min(3 * 2, 4) * 3 * 4
    )
    small_config["project"]["layers"] = "all"
    assert (
        pair_budget(load_config(small_config), "base", "benign_eval").score_bytes_per_prompt
        == 4 * (b.score_bytes_per_prompt - 100 * 2 * 3 * 4) + 100 * 4 * 3 * 4
    )
    small_config["project"]["random_directions"] = 0
    assert pair_budget(load_config(small_config), "base", "benign_eval").score_bytes_per_prompt == 4 * (
        b.score_bytes_per_prompt - 100 * 2 * 3 * 4
    )


def test_stream_writes_scores_only_except_for_sets_an_analysis_reads(small_config):
    small_config["capture"]["stream"] = True
    study = load_config(small_config)
    # the harm check reads the activations of harmful_eval and benign_eval: they are not streamed
    assert study.activation_sets() == ["benign_eval", "harmful_eval"]
    assert not any(b.streamed for b in study_budget(study))
    small_config["checks"] = {"harm_separation": None}
    small_config["capture"]["keep_activations"] = ["harmful_eval"]
    study = load_config(small_config)
    streamed = {b.prompt_set: b.streamed for b in study_budget(study)}
    assert streamed == {"benign_eval": True, "harmful_eval": False}
    b = pair_budget(study, "base", "benign_eval")
    assert b.written_per_prompt == 2 * b.score_bytes_per_prompt  # stream shards + the set table, no activations


def test_report_warns_above_the_limit(small_config):
    study = load_config(small_config)
    lines = report(study, limit_gb=1000)
    assert lines[0].startswith("activation budget")
    assert any(line.strip().startswith("base/harmful_eval: 20 prompts x") for line in lines)
    assert any(line.strip().startswith("per variant: base") for line in lines)
    assert lines[-1].strip().startswith("total:") and not any("WARNING" in line for line in lines)
    warned = report(study, limit_gb=1e-9)
    assert warned[-1].startswith("WARNING: capture will write") and "checks.activation_budget_gb" in warned[-1]
    assert "capture.stream" in warned[-1]


def test_score_row_bytes_is_what_the_score_tables_take_at_scale(tmp_path):
    """Project a shard of 2,000 prompts with 30 response tokens each onto 6 traits and write the tables as project
    does: the bytes per row are SCORE_ROW_BYTES (the float32 score does not compress; the rest nearly vanishes)."""
    n, tokens, d, layer = 2000, 30, 64, 2
    gen = torch.Generator().manual_seed(0)
    shard = ActivationShard(
        {
            f"last.layer_{layer}": torch.randn(n, d, generator=gen).half(),
            f"mean.layer_{layer}": torch.randn(n, d, generator=gen).half(),
            f"response.layer_{layer}": torch.randn(n * tokens, d, generator=gen).half(),
            "response.offsets": torch.arange(0, n * tokens + 1, tokens),
            "response.token_ids": torch.randint(0, 50000, (n * tokens,), generator=gen),
            "response.is_prefill": torch.zeros(n * tokens, dtype=torch.bool),
        },
        {
            "ids": [f"beavertails-{i:06d}" for i in range(n)],
            "layers": [layer],
            "positions": ["last", "mean", "response"],
        },
    )
    traits = []
    for t in ("safety/evil", "safety/harm", "safety/refusal", "safety/deception", "alignment/sycophancy", "x/y"):
        v = torch.randn(d, generator=gen)
        traits.append(
            TraitVectors(
                {"trait": t, "position": "last", "best": {"layer": layer, "method": "mean_diff"}, "hidden_size": d},
                {f"mean_diff.layer_{layer}": v},
            )
        )
    pooled, per_token = project_shard(shard, traits, section("project", {"layers": "best"}), n_layers=4)
    sizes = []
    for name, df in (("pooled", pooled), ("tokens", per_token)):
        write_parquet(tmp_path / f"{name}.parquet", df)
        sizes.append((tmp_path / f"{name}.parquet").stat().st_size / len(df))
    assert len(pooled) == n * 6 * 3 and len(per_token) == n * tokens * 6
    assert all(0.6 * SCORE_ROW_BYTES < b < 1.4 * SCORE_ROW_BYTES for b in sizes), sizes
    assert np.isfinite(pooled["score"]).all()


def test_pairs_captured_only_for_their_activations_are_counted_without_scores(tiny_model_dir):
    from conftest import organism_config

    study = load_config(organism_config(tiny_model_dir))
    budgets = {(b.variant, b.prompt_set): b for b in study_budget(study)}
    for pair in (("base", "medical_extract"), ("bad_advice", "medical_extract"), ("bad_advice", "medical_eval")):
        assert budgets[pair].score_bytes_per_prompt == 0 and budgets[pair].activation_bytes_per_prompt > 0
    assert budgets[("base", "benign_eval")].score_bytes_per_prompt > 0  # projected
    assert set(budgets) == set(study.projected_pairs()) | set(study.captured_only_pairs())
    assert any(line.endswith("(activations)") for line in report(study, 1000))
