"""Prompt sets: builtin data, the real dataset formats, field mapping, sampling, shards, hub."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pandas as pd
import pytest
from conftest import SHARED_DATA, load_set

from traitscope.core.io import parquet_attrs, write_parquet
from traitscope.core.prompts import COLUMNS, PromptSetError, assign_shards, builtin_names
from traitscope.core.traits import builtin_traits, contrast_from_tables, persona_table
from traitscope.workflow.config import entry

needs_shared = pytest.mark.skipif(not SHARED_DATA.exists(), reason="../shared/data not present")


def test_builtin_sets_are_disjoint_and_stable():
    assert {"benign", "harmful"} <= set(builtin_names())
    a = load_set({"source": "builtin", "name": "harmful", "split": "extract"})
    b = load_set({"source": "builtin", "name": "harmful", "split": "eval"})
    assert list(a.columns) == COLUMNS
    assert len(a) >= 40 and len(b) >= 20
    assert not set(a["prompt"]) & set(b["prompt"]), "extract and eval prompts overlap"
    assert (a["label"] == 1).all()
    again = load_set({"source": "builtin", "name": "harmful", "split": "extract"})
    assert a["id"].tolist() == again["id"].tolist()
    assert a["id"].is_unique


def test_builtin_traits_cover_the_required_five():
    assert {"safety/evil", "safety/harm", "safety/refusal", "safety/deception", "alignment/sycophancy"} <= set(
        builtin_traits()
    )


def test_persona_table_groups_questions_and_pairs():
    df = persona_table("safety/evil", entry("traits", {"source": "builtin"}))
    assert set(df["label"]) == {0, 1}
    # every question appears under both polarities and every pair: a group holds both labels
    per_group = df.groupby("group")["label"].agg(["nunique", "size"])
    assert (per_group["nunique"] == 2).all() and (per_group["size"] == 10).all()
    assert df["system"].str.match(r"^You are (an evil|a helpful) assistant\. ").all()
    assert df["id"].is_unique


def test_contrast_table_labels_and_ids():
    pos = load_set({"source": "builtin", "name": "harmful", "split": "extract"})
    neg = load_set({"source": "builtin", "name": "benign", "split": "extract"})
    df = contrast_from_tables(pos, neg, "h", "b")
    assert df["label"].sum() == len(pos) and len(df) == len(pos) + len(neg)
    assert df["id"].is_unique and (df["group"] == df["id"]).all()


def test_csv_with_embedded_newlines_and_field_mapping(tmp_path):
    path = tmp_path / "harmbench.csv"
    pd.DataFrame(
        {
            "Behavior": ["Write a poem", "Summarise the text"],
            "FunctionalCategory": ["standard", "contextual"],
            "SemanticCategory": ["misinformation", "harassment"],
            "Tags": ["", "context"],
            "ContextString": ["", 'line one\nline two, with comma\n"quoted"'],
            "BehaviorID": ["poem_1", "summary_2"],
        }
    ).to_csv(path, index=False)
    df = load_set(
        {
            "source": "local",
            "path": str(path),
            "fields": {"prompt": "Behavior", "category": "SemanticCategory", "id": "BehaviorID"},
        }
    )
    assert df["id"].tolist() == ["poem_1", "summary_2"]
    assert df["category"].tolist() == ["misinformation", "harassment"]
    meta = json.loads(df["meta"].iloc[1])
    assert meta["ContextString"] == 'line one\nline two, with comma\n"quoted"'


def test_gzipped_chat_jsonl(tmp_path):
    path = tmp_path / "chat.jsonl.gz"
    rows = [
        {"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}]}
        for i in range(3)
    ]
    path.write_bytes(gzip.compress("\n".join(json.dumps(r) for r in rows).encode()))
    df = load_set({"source": "local", "path": str(path)})
    assert df["prompt"].tolist() == ["q0", "q1", "q2"] and df["response"].tolist() == ["a0", "a1", "a2"]


def test_bad_field_mapping_is_one_line(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("text\nhello\n")
    with pytest.raises(PromptSetError, match="fields"):
        load_set({"source": "local", "path": str(path), "fields": {"prompt": "nope"}}, key="prompt_sets.x")


def test_sampling_is_seeded_and_shards_balanced():
    spec = {"source": "builtin", "name": "benign", "split": "all", "sample": 25, "seed": 3, "shards": 4}
    a, b = load_set(spec), load_set(spec)
    c = load_set({**spec, "seed": 4})
    assert len(a) == 25 and a["id"].tolist() == b["id"].tolist() and a["id"].tolist() != c["id"].tolist()
    counts = np.bincount(a["shard"])
    assert counts.max() - counts.min() <= 1 and len(counts) == 4
    assert assign_shards(5, 1).tolist() == [0] * 5


def test_hub_path_uses_datasets(monkeypatch):
    import datasets

    calls = {}

    def fake_load(name, subset=None, split=None):
        calls.update(name=name, subset=subset, split=split)
        return datasets.Dataset.from_dict({"prompt": ["p1", "p2"], "target": ["t1", "t2"]})

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    df = load_set({"source": "hub", "dataset": "walledai/AdvBench", "split": "train", "label": 1})
    assert calls == {"name": "walledai/AdvBench", "subset": None, "split": "train"}
    assert df["prompt"].tolist() == ["p1", "p2"] and (df["label"] == 1).all()
    assert json.loads(df["meta"].iloc[0]) == {"target": "t1"}
    assert df["source"].iloc[0] == "hub:walledai/AdvBench"


def test_hub_failure_is_actionable(monkeypatch):
    import datasets

    def boom(*a, **k):
        raise ConnectionError("offline\nmore lines")

    monkeypatch.setattr(datasets, "load_dataset", boom)
    with pytest.raises(PromptSetError) as info:
        load_set({"source": "hub", "dataset": "x/y"}, key="prompt_sets.x")
    assert "\n" not in str(info.value) and "source: local" in str(info.value)


# ------------------------------------------------------------------ real formats in ../shared/data


@needs_shared
def test_real_advbench_csv():
    df = load_set({"source": "local", "path": str(SHARED_DATA / "advbench/harmful_behaviors.csv"), "label": 1})
    assert len(df) == 520
    assert df["prompt"].iloc[0].startswith("Write a script that can exploit")
    assert json.loads(df["meta"].iloc[0])["target"].startswith("Sure, here is")
    strings = load_set(
        {"source": "local", "path": str(SHARED_DATA / "advbench/harmful_strings.csv"), "format": "advbench"}
    )
    assert len(strings) > 500


@needs_shared
def test_real_refusal_direction_json():
    df = load_set({"source": "local", "path": str(SHARED_DATA / "refusal_direction/splits/harmful_val.json")})
    assert len(df) == 39 and df["prompt"].str.len().min() > 5


@needs_shared
def test_real_em_questions_yaml():
    df = load_set(
        {"source": "local", "path": str(SHARED_DATA / "emergent_misalignment/evaluation/first_plot_questions.yaml")}
    )
    assert df["group"].nunique() == 24
    assert df["id"].str.contains("#").all()
    with_system = df[df["system"].notna()]
    assert len(with_system) > 0  # the json-format questions carry a system prompt
    dec = load_set(
        {"source": "local", "path": str(SHARED_DATA / "emergent_misalignment/evaluation/deception_factual.yaml")}
    )
    assert "Do not lie to the user." in set(dec["system"])
    # nothing is dropped: the questions' judge prompts travel in meta
    assert all("judge_prompts" in json.loads(m) for m in df["meta"])


def test_dropped_rows_are_counted_and_warned_about_by_set_name(tmp_path, caplog):
    path = tmp_path / "p.csv"
    path.write_text("id,prompt,label\na,first,1\na,first,1\nb,,0\nc,third,0\nd,third,0\n")
    with caplog.at_level("WARNING", logger="traitscope.core.prompts"):
        df = load_set({"source": "local", "path": str(path)}, key="prompt_sets.mine")
    assert df["id"].tolist() == ["a", "c", "d"] and df["label"].tolist() == [1, 0, 0]  # the label column is used
    assert df.attrs["prep"] == {
        "rows_read": 5,
        "dropped_empty_prompt": 1,
        "dropped_duplicate": 1,
        "repeated_prompt_kept": 1,
        "rows": 3,
    }
    assert "prompt_sets.mine: dropped 1 rows without a prompt (of 5 read)" in caplog.text
    assert "prompt_sets.mine: dropped 1 exact duplicate rows" in caplog.text
    assert "prompt_sets.mine: 1 rows repeat another row's prompt" in caplog.text
    write_parquet(tmp_path / "p.parquet", df)
    assert parquet_attrs(tmp_path / "p.parquet")["prep"]["dropped_duplicate"] == 1


@needs_shared
def test_real_persona_json_as_trait_and_questions():
    path = SHARED_DATA / "persona_vectors/trait_data_extract/evil.json"
    # the trait word comes from the file (its judge prompt's **evil**), not from the config key
    df = persona_table("safety/evil_pv", entry("traits", {"source": "persona_json", "path": str(path)}))
    assert len(df) == 5 * 2 * 20 and df["group"].nunique() == 20
    assert df["system"].iloc[0].startswith("You are an evil assistant. Your responses should demonstrate evil")
    assert df["system"].iloc[-1].startswith("You are a helpful assistant.")
    apathetic = SHARED_DATA / "persona_vectors/trait_data_extract/apathetic.json"
    named = persona_table("t/x", entry("traits", {"source": "persona_json", "path": str(apathetic)}))
    assert named["system"].iloc[0].startswith("You are an apathetic assistant.")
    chosen = persona_table("t/x", entry("traits", {"source": "persona_json", "path": str(path), "adjective": "cruel"}))
    assert chosen["system"].iloc[0].startswith("You are a cruel assistant.")
    questions = load_set({"source": "local", "path": str(path)})
    assert len(questions) == 20


@needs_shared
def test_real_model_organisms_gz_chat():
    df = load_set(
        {
            "source": "local",
            "sample": 50,
            "path": str(SHARED_DATA / "model_organisms_em/training_datasets/bad_medical_advice.jsonl.gz"),
        }
    )
    assert len(df) == 50 and df["response"].notna().all() and df["prompt"].notna().all()
