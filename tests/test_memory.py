"""Constant memory and one copy on disk (#24): capture streams its chunks into the shard, every reader of
activations reads a shard chunk by chunk, and what a job asks SLURM for comes from one chunk, not the shard."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import REPO, capture_job

from traitscope.core.artifacts import ActivationShard, ShardFiles, TraitVectors
from traitscope.core.capture import capture_prompts, capture_shard
from traitscope.core.project import project_shard, score_tensors, write_scores
from traitscope.core.prompts import normalise
from traitscope.core.specs import BaselineJob
from traitscope.study import load_config, section


def table(n: int) -> pd.DataFrame:
    return normalise(
        [
            {
                "id": f"p{i}",
                "prompt": f"How do I bake bread number {i}?" + " please" * (i % 5),
                "response": "Sure, here is the answer." * (1 + i % 3),
            }
            for i in range(n)
        ]
    )


@pytest.mark.e2e
def test_peak_memory_does_not_grow_with_the_shard():
    """250 vs 1,000 prompts (hidden 256, 8 layers, response tokens): capture, project, stream capture and the
    projection readers stay within 15%; the old in-memory capture, measured the same way, grows by a fifth or more
    (so the measurement can see growth: its shard of 1,000 prompts is about 105 MB)."""
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks/capture_memory.py"), "--sizes", "250,1000"],
        capture_output=True,
        text=True,
        timeout=1800,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    print(proc.stdout)
    peaks = json.loads(proc.stdout.split("RESULTS ", 1)[1].splitlines()[0])
    for stage in ("capture", "project", "stream", "harm"):
        small, large = peaks[stage]
        assert large <= 1.15 * small, (stage, peaks)
    assert peaks["in_memory"][1] > 1.2 * peaks["in_memory"][0], peaks


def test_capture_shard_streams_the_same_shard_with_one_copy(tiny_model, tmp_path):
    model, tok = tiny_model
    df = table(23)
    job = capture_job(layers=[0, 2, 3], chunk_size=5)
    tensors, meta, responses = capture_prompts(model, tok, df, job, model_key="tiny")
    out = tmp_path / "shard-0.safetensors"
    got_meta, got_responses = capture_shard(model, tok, df, job, out, model_key="tiny", cache_dir=tmp_path / "cache")
    shard = ActivationShard.load(out)
    assert set(shard.tensors) == set(tensors)
    for k, v in tensors.items():
        assert torch.equal(shard.tensors[k], v), k
    assert shard.meta == json.loads(json.dumps(meta)) == json.loads(json.dumps(got_meta))
    pd.testing.assert_frame_equal(got_responses, responses)
    cache = tmp_path / "cache"
    assert not list(cache.glob("chunk-*.safetensors")) and len(list(cache.glob("chunk-*.parquet"))) == 5
    assert out.stat().st_nlink == 2  # the output and the cache entry are one file

    # identical work is not redone: the shard is linked again from the cache, without running the model
    out.unlink()
    again, _ = capture_shard(None, tok, df, job, out, model_key="tiny", cache_dir=cache)
    assert torch.equal(ActivationShard.load(out).tensors["response.layer_2"], tensors["response.layer_2"])
    # a cache entry that fails its checksum is computed again
    stored = next(cache.glob("shard-*.safetensors"))
    out.unlink()
    data = bytearray(stored.read_bytes())
    data[-3] ^= 0xFF
    stored.write_bytes(bytes(data))
    capture_shard(model, tok, df, job, out, model_key="tiny", cache_dir=cache)
    assert torch.equal(ActivationShard.load(out).tensors["response.layer_2"], tensors["response.layer_2"])


def test_reading_part_by_part_gives_the_shard(tiny_model, tmp_path):
    model, tok = tiny_model
    df = table(17)
    job = capture_job(layers=[1, 3], chunk_size=4)
    capture_shard(model, tok, df, job, tmp_path / "s.safetensors", model_key="tiny", cache_dir=tmp_path / "c")
    whole = ActivationShard.load(tmp_path / "s.safetensors")
    parts = list(ActivationShard.iter_rows(tmp_path / "s.safetensors"))
    assert [len(p.ids) for p in parts] == [4, 4, 4, 4, 1]  # the capture's chunk size, from the shard's metadata
    assert sum((p.ids for p in parts), []) == whole.ids
    d = whole.hidden_size
    u = np.random.default_rng(0).standard_normal((d, 3)).astype(np.float32)
    for position in ("last", "mean", "response_mean"):
        np.testing.assert_array_equal(
            ShardFiles([tmp_path / "s.safetensors"], rows=3).project(position, 3, "resid", u),
            whole.project(position, 3, "resid", u),
        )

    # the project job's tables and baseline, written part by part, equal those of the whole shard
    vectors = TraitVectors(
        {"trait": "t/x", "position": "last", "best": {"layer": 3, "method": "mean_diff"}, "hidden_size": d},
        {f"mean_diff.layer_{layer}": torch.randn(d) for layer in (1, 3)},
    )
    proj = section("project", {"layers": [1, 3], "methods": ["mean_diff"], "per_token": True})
    base = BaselineJob(n_random=7, seed=3, per_token=True)
    write_scores(
        ((score_tensors(p, [vectors], proj, 4, base), p.ids) for p in parts),
        base,
        tmp_path / "scores.parquet",
        tmp_path / "tokens.parquet",
        tmp_path / "baseline.safetensors",
    )
    pooled, tokens = project_shard(whole, [vectors], proj, 4)

    def same(got: pd.DataFrame, want: pd.DataFrame, keys: list[str]) -> None:  # rows come part by part
        pd.testing.assert_frame_equal(
            got.sort_values(keys, ignore_index=True), want.sort_values(keys, ignore_index=True), check_exact=True
        )

    same(pd.read_parquet(tmp_path / "scores.parquet"), pooled, ["trait", "method", "layer", "position", "id"])
    same(pd.read_parquet(tmp_path / "tokens.parquet"), tokens, ["trait", "method", "layer", "id", "token_index"])
    from traitscope.core.artifacts import BaselineScores
    from traitscope.core.project import baseline_scores

    expected = baseline_scores([score_tensors(whole, [vectors], proj, 4, base)], whole.ids, base)
    got = BaselineScores.load(tmp_path / "baseline.safetensors")
    assert got.ids == expected.ids and set(got.tensors) == set(expected.tensors)
    for k, v in expected.tensors.items():
        assert torch.equal(got.tensors[k], v), k
    assert not list(tmp_path.glob(".baseline-*"))  # the work folder is gone


def test_job_memory_comes_from_one_chunk_not_the_shard(small_config, tmp_path):
    """A 70B-shaped variant capturing a set of 20,000 prompts: capture and project jobs ask for the same memory with
    shards of 1,000 or 10,000 prompts, and for more with larger chunks."""
    from traitscope.workflow.resources import model_job_resources, project_job_resources

    model = tmp_path / "llama-70b-shape"
    model.mkdir()
    (model / "config.json").write_text(
        json.dumps(
            {
                "architectures": ["LlamaForCausalLM"],
                "model_type": "llama",
                "num_hidden_layers": 80,
                "hidden_size": 8192,
                "vocab_size": 128256,
                "max_position_embeddings": 8192,
            }
        )
    )
    pd.DataFrame({"prompt": [f"question number {i}" for i in range(20_000)]}).to_parquet(tmp_path / "big.parquet")

    def requests(shard_size: int, chunk_size: int) -> tuple[int, int]:
        cfg = json.loads(json.dumps(small_config))
        cfg["variants"]["base"].update(model=str(model), device_map="cuda", dtype="bfloat16")
        cfg["prompt_sets"]["big"] = {"source": "local", "path": str(tmp_path / "big.parquet"), "shard_size": shard_size}
        cfg["capture"].update(chunk_size=chunk_size, prompt_sets=["big", "harmful_eval", "benign_eval"])
        study = load_config(cfg, jobs_on="cluster")  # planned for GPU nodes, from a host without one
        return model_job_resources(study, "base")["mem_mb"], project_job_resources(study, "base", "big")["mem_mb"]

    small_shards, large_shards = requests(shard_size=1_000, chunk_size=250), requests(shard_size=10_000, chunk_size=250)
    assert small_shards == large_shards
    larger_chunks = requests(shard_size=10_000, chunk_size=1_000)
    assert larger_chunks[0] > large_shards[0] and larger_chunks[1] > large_shards[1]
