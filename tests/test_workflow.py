"""The real Snakemake DAG on a tiny random model: run it, then check what re-runs and what not."""

from __future__ import annotations

import hashlib
import html
import json
import os
import re
import shutil
import subprocess
import sys
import time
import zipfile
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from browser import PANEL_JS, browser
from conftest import REPO, finished
from dag import planned_jobs, smk

from traitscope.core.chat import token_texts

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def runs(tiny_runs):
    return tiny_runs


@pytest.fixture(scope="module")
def study(tiny_study):
    return tiny_study


def test_full_dag_produces_every_stage(study):
    workdir, _ = study
    r = workdir / "results"
    manifest = json.loads((r / "all").read_text())
    assert manifest["packages"]["torch"] and manifest["config"]["seed"] == 7
    for expected in (
        "harm_separation/harm_separation.png",
        "analysis/trait_scores.png",
        "extract/summary.png",
        "vectors/base/safety/evil/vectors.safetensors",
    ):
        assert any(k.endswith(expected) for k in manifest["outputs"]), expected
        assert len(manifest["outputs"][next(k for k in manifest["outputs"] if k.endswith(expected))]) == 64
    sidecar = json.loads((r / "vectors/base/safety/evil/vectors.json").read_text())
    assert sidecar["position"] == "response_mean" and sidecar["hidden_size"] == 32
    assert len(sidecar["vectors"]) == 2 * 4  # two methods x four layers
    assert not set(sidecar["split"]["train_groups"]) & set(sidecar["split"]["test_groups"])
    assert {"auc", "accuracy", "cohens_d"} <= set(sidecar["vectors"][0]["metrics"])
    # harmful_eval has two shards: one capture job per shard, every layer inside it
    shards = sorted((r / "activations/base/harmful_eval").glob("shard-*.safetensors"))
    assert [s.name for s in shards] == ["shard-0.safetensors", "shard-1.safetensors"]
    scores = pd.read_parquet(r / "analysis/trait_scores.parquet")
    assert set(scores["prompt_set"]) == {"harmful_eval", "benign_eval"}
    assert scores.groupby("prompt_set")["id"].nunique().to_dict() == {"harmful_eval": 20, "benign_eval": 20}
    tokens = pd.read_parquet(r / "projections/base/benign_eval/tokens.parquet")
    assert len(tokens) > 0 and {"token_index", "token_id", "is_prefill"} <= set(tokens.columns)
    check = json.loads((r / "harm_separation/harm_separation.json").read_text())
    assert check["n_eval_harmful"] == 20
    assert check["passed"] == (min(check["extraction_test_auc"], check["eval_auc"]) >= check["min_auc"])
    harm = json.loads((r / "vectors/base/safety/harmful_instruction/vectors.json").read_text())
    best = next(
        v for v in harm["vectors"] if (v["method"], v["layer"]) == (harm["best"]["method"], harm["best"]["layer"])
    )
    assert check["extraction_test_auc"] == best["metrics"]["auc"] and check["best_layer"] == harm["best"]["layer"]
    assert check["extraction_val_auc"] == max(
        v["metrics"]["val_auc"] for v in harm["vectors"] if v["method"] == harm["best"]["method"]
    )
    assert (r / "logs/capture/base/harmful_eval/shard-1.log").stat().st_size > 0
    # every capture's rows, cut prompts and over-context rows are counted in results/all (from its responses tables)
    counts = manifest["captured_rows"]["counts"]
    resp = pd.concat([pd.read_parquet(f) for f in (r / "activations/base/harmful_eval").glob("*.responses.parquet")])
    assert counts["base/harmful_eval"] == {
        "rows": 20,
        "truncated": int(resp["truncated"].sum()),
        "over_context": int(resp["over_context"].sum()),
    }
    assert {"extract/safety/evil", "extract/safety/harmful_instruction"} <= set(counts)
    table = pd.read_parquet(r / "steering/base/safety/evil/sweep.parquet")
    sweep, control = table[table["vector"] == "trait"], table[table["vector"] == "random"]
    assert set(sweep["coef"]) == {0, 1} and sweep.groupby("coef").size().tolist() == [2, 2]
    by_coef = sweep.pivot_table(index="prompt", columns="coef", values="response", aggfunc="first")
    assert (by_coef[0] != by_coef[1]).any()  # the vector added at 1 x the residual norm changes what is said
    # the control: a same-norm random direction at the same coefficients, from the same unsteered answers
    assert control.groupby("coef").size().tolist() == [2, 2] and set(control["layer"]) == set(sweep["layer"])
    random_at_1 = control[control["coef"] == 1].set_index("prompt")["response"]
    assert (random_at_1 != by_coef[1].reindex(random_at_1.index)).any()
    versus = json.loads((r / "steering/base/safety/evil/versus_random.json").read_text())
    (row,) = versus["coefficients"]
    assert row["coef"] == 1 and row["n"] == 2 and versus["raises_beyond_random"] in (True, False)
    assert row["random_trait_score"] == pytest.approx(control[control["coef"] == 1]["trait_score"].mean())
    assert (sweep["judge_kind"].str.startswith("offline")).all()
    gap = json.loads((r / "optimize/extraction_gap.json").read_text())
    evil = gap["traits"]["safety/evil"]
    from traitscope.core.artifacts import TraitVectors
    from traitscope.core.io import read_safetensors

    opt_side = json.loads((r / "optimize/base/safety/evil/vector.json").read_text())
    extracted = TraitVectors.load(
        r / "vectors/base/safety/evil/vectors.safetensors", r / "vectors/base/safety/evil/vectors.json"
    )
    optimised, _ = read_safetensors(r / "optimize/base/safety/evil/vector.safetensors")
    v0, v1 = extracted.tensors[opt_side["start"]].double(), next(iter(optimised.values())).double()
    assert evil["cosine"] == pytest.approx(float(v0 @ v1 / (v0.norm() * v1.norm())), abs=1e-5)
    assert {"extracted_delta", "optimised_delta"} <= set(evil["heldout"])
    assert gap["judge_kind"].startswith("offline")
    assert (r / "optimize/optimization_curves.png").stat().st_size > 5000
    assert len(list((r / "cache/optimize").glob("*.json"))) == 1  # the CMA-ES checkpoint


def test_finetuned_variants_and_their_analyses(study):
    workdir, _ = study
    r = workdir / "results"
    adapter = r / "finetune/bad_advice/adapter"
    prov = json.loads((adapter / "traitscope_finetune.json").read_text())
    assert (adapter / "adapter_model.safetensors").exists() and (adapter / "adapter_config.json").exists()
    assert prov["data_sha256"] == hashlib.sha256((r / "finetune/bad_advice/train.jsonl.gz").read_bytes()).hexdigest()
    assert prov["n_examples"] == 24 and prov["settings"]["rank"] == 4 and prov["steps"] > 0
    loss = pd.read_parquet(r / "finetune/bad_advice/loss.parquet")
    assert set(loss["split"]) == {"train", "eval"} and len(loss[loss["split"] == "train"]) == prov["steps"]
    assert (r / "finetune/bad_advice/loss.png").stat().st_size > 5000
    # the finetuned variant is captured like any other, through base model + adapter
    acts = r / "activations/bad_advice/medical_eval/shard-0.safetensors"
    assert acts.exists()
    det = json.loads((r / "organism/bad_advice/detection.json").read_text())
    assert len(det["per_layer"]) == 2 * 4 and det["chosen"]["layer"] in range(4)
    assert all(
        row["auc_ci_low"] <= row["auc"] <= row["auc_ci_high"] and row["n_test"] == 16 and row["n_train"] == 24
        for row in det["per_layer"]
    )
    # the layer is chosen on the training split (largest train Cohen's d), never on the held-out AUC it reports
    rows = [row for row in det["per_layer"] if row["method"] == det["chosen"]["method"]]
    chosen = max(rows, key=lambda row: (row["train_cohens_d"], -row["layer"]))
    assert det["chosen"]["layer"] == chosen["layer"] and det["chosen"]["heldout_auc"] == chosen["auc"]
    ablation = json.loads((r / "organism/bad_advice/ablation.json").read_text())
    assert ablation["layers"] == [det["chosen"]["layer"]] and ablation["n_generations"] == 2
    assert ablation["judge"]["kind"].startswith("offline") and "restoration_rate" in ablation["judge"]
    table = pd.read_parquet(r / "organism/bad_advice/ablation.parquet")
    assert {"base", "finetuned", "finetuned_ablated", "finetuned_judged"} <= set(table.columns) and len(table) == 2
    assert "| prompt | base | finetuned | finetuned_ablated |" in (r / "organism/bad_advice/ablation.md").read_text()
    bd = json.loads((r / "backdoor/backdoored/detection_auc.json").read_text())
    evil = bd["traits"]["safety/evil"]
    assert (
        set(evil["positions"]["last"]) >= {"backdoored", "base"}
        and evil["positions"]["last"]["backdoored"]["n_pairs"] == 20
    )
    assert "auc_minus_baseline" in evil["positions"]["last"]
    for variant in ("backdoored", "base"):  # each AUC against 100 random directions on the same activations
        row = evil["positions"]["last"][variant]
        assert 0 <= row["random_auc_p95"] <= 1 and row["beats_random"] == (row["auc"] > row["random_auc_p95"])
    # the positive control: a trigger direction planted in the trigger rows, found from some coefficient on
    for trait, x in bd["traits"].items():
        rows = x["planted"]["rows"]
        assert len(rows) == 16 and x["planted"]["n_trigger"] == x["planted"]["n_control"] == 20, trait
        assert all(r["detected"] == (r["auc"] > r["random_auc_p95"]) for r in rows)  # the experiment's criterion
        own = [r for r in rows if r["planted"] == "trait"]
        assert own[-1]["auc"] > own[0]["auc"] and own[-1]["auc"] == 1.0  # planting more separates more
    assert any(x["planted"]["detection_limit"] is not None for x in bd["traits"].values())
    tokens = pd.read_parquet(r / "backdoor/backdoored/token_auc.parquet")
    assert tokens["token_index"].min() == -1 and tokens["token_index"].max() == 3
    # every token, the last prompt token included, beside its random directions' 95th percentile
    assert tokens["random_auc_p95"].between(0, 1).all() and tokens["n_random"].gt(0).all()
    for fig in ("trait_comparison.png", "early_detection_tokens.png"):
        assert (r / "backdoor/backdoored" / fig).stat().st_size > 5000


def test_variant_comparison_on_replayed_responses(study):
    workdir, _ = study
    r = workdir / "results"
    replay = pd.read_parquet(r / "prompts/em_replay.parquet")
    base_resp = pd.read_parquet(r / "activations/base/em/shard-0.responses.parquet").set_index("id")["response"]
    assert (replay["response"] == replay["id"].map(base_resp)).all() and replay["source"].iloc[0] == "replay:base/em"
    # both variants saw exactly the same response tokens
    from traitscope.core.io import read_safetensors

    a, _ = read_safetensors(r / "activations/base/em_replay/shard-0.safetensors", ["response.token_ids"])
    b, _ = read_safetensors(r / "activations/bad_advice/em_replay/shard-0.safetensors", ["response.token_ids"])
    assert a["response.token_ids"].equal(b["response.token_ids"])
    result = json.loads((r / "emergent_misalignment/variant_comparison.json").read_text())
    assert set(result["traits"]) == {"safety/evil", "safety/harmful_instruction"}
    from statsmodels.stats.multitest import multipletests

    traits = sorted(result["traits"])
    holm = multipletests([result["traits"][t]["p"] for t in traits], method="holm")[1]
    for t, adjusted in zip(traits, holm):
        t = result["traits"][t]
        assert (
            t["n"] <= 10
            and t["p_adjusted"] == pytest.approx(adjusted)
            and t["ci_low"] <= t["mean_difference"] <= t["ci_high"]
        )
    assert result["correction"]["method"] == "holm"
    assert (r / "emergent_misalignment/figures/trait_distributions.png").stat().st_size > 5000
    # the control, recomputed from the saved random-direction scores of both variants
    from traitscope.core.artifacts import BaselineScores
    from traitscope.experiments.emergent_misalignment.analysis import random_control, random_differences

    traits = result["traits"]
    control = random_control(
        random_differences(
            {
                v: BaselineScores.load(r / f"projections/{v}/em_replay/baseline.safetensors")
                for v in ("base", "bad_advice")
            },
            replay,
            {t: x["layer"] for t, x in traits.items()},
            {t: x["position"] for t, x in traits.items()},
            {t: "resid" for t in traits},
            base="base",
            variant="bad_advice",
        )
    )
    for t, x in traits.items():
        assert x["random_abs_dz_p95"] == control[t]["random_abs_dz_p95"] and x["n_random"] == 100
        assert x["beats_random"] == (abs(x["cohens_dz"]) > x["random_abs_dz_p95"])
    assert result["n_significant_and_beats_random"] == sum(
        x["significant"] and x["beats_random"] for x in traits.values()
    )
    # the positive control: the trait's own vector planted at growing coefficients, a random one beside it
    from traitscope.core.artifacts import TraitVectors
    from traitscope.core.planted import COEFFICIENTS
    from traitscope.core.sweep import trait_norms

    for t, s in result["sensitivity"].items():
        vec = TraitVectors.load(r / f"vectors/base/{t}/vectors.safetensors", r / f"vectors/base/{t}/vectors.json")
        norm = trait_norms(r / f"extract/base/{t}/activations.safetensors", vec, [traits[t]["layer"]])
        assert s["norm"] == pytest.approx(norm[traits[t]["layer"]]) and s["n_questions"] == traits[t]["n"]
        own = [x for x in s["rows"] if x["planted"] == "trait"]
        assert [x["coef"] for x in own] == list(COEFFICIENTS)
        assert [x["score_shift"] for x in own] == pytest.approx([c * s["norm"] for c in COEFFICIENTS])
        assert own[-1]["detected"] and s["detection_limit"] == min(x["coef"] for x in own if x["detected"])
        randoms = [x for x in s["rows"] if x["planted"] == "random"]
        assert max(abs(x["score_shift"]) for x in randoms) < 0.5 * own[-1]["score_shift"]


def test_external_datasets_and_prefill_attack(study):
    workdir, _ = study
    r = workdir / "results"
    bt = json.loads((r / "external/beavertails/results.json").read_text())
    assert bt["n_unsafe"] == 24 and bt["n_safe"] == 24 and bt["severity_available"]
    evil = bt["traits"]["safety/evil"]
    assert evil["overall"]["n_unsafe"] == 24
    from sklearn.metrics import roc_auc_score

    scored = pd.read_parquet(r / "external/beavertails/scores.parquet")
    scored = scored[scored["trait"] == "safety/evil"].dropna(subset=["score", "label"])
    assert evil["overall"]["auc"] == pytest.approx(roc_auc_score(scored["label"], scored["score"]))
    # safe answers to the same prompts; the category flagged on a single row has too few and no AUC
    for cat, c in evil["categories"].items():
        assert (c["negatives"], c["auc"] is None) == (
            ("same_prompts", False) if c["n_unsafe"] >= 3 else ("all_safe", True)
        ), cat
    assert evil["severity"]["unsafe_rows"]["n"] == 24
    # the control baseline, recomputed from the random-direction scores that project wrote beside the trait scores
    from traitscope.core.artifacts import BaselineScores

    (path,) = r.glob("projections/*/bt/baseline.safetensors")
    base = BaselineScores.load(path)
    frame = pd.DataFrame(base.pooled(evil["layer"], evil["position"]), index=base.ids)
    random_aucs = [roc_auc_score(scored["label"], frame.loc[scored["id"], j]) for j in frame]
    assert evil["overall"]["n_random"] == 100 == base.n_random
    assert evil["overall"]["random_auc_p95"] == pytest.approx(np.percentile(random_aucs, 95))
    assert evil["baseline"].startswith(("beats its random baseline", "DOES NOT BEAT ITS RANDOM BASELINE"))
    hb = json.loads((r / "external/harmbench/results.json").read_text())
    assert hb["n_unsafe"] == 12 and hb["n_safe"] == 20 and not hb["severity_available"]
    assert set(hb["traits"]["safety/harmful_instruction"]["categories"]) == {
        "chemical_biological",
        "cybercrime_intrusion",
        "harassment_bullying",
        "misinformation_disinformation",
    }
    fails = json.loads((r / "external/harmbench/failure_cases.json").read_text())["failure_cases"]
    for f in fails.values():
        assert f["n_missed"] >= len(f["cases"]) and all(c["prompt"] for c in f["cases"])
    pa = json.loads((r / "prefill_attack/condition_comparison.json").read_text())
    assert set(pa["comparisons"]) == {"C2_vs_C4", "C1_vs_C3", "C1_vs_C2"}
    assert pa["cells"]["safety/evil"]["C2"]["n"] == 20 and pa["prefill_text"] == ["Sure, here is how"]
    window = pd.read_parquet(r / "prefill_attack/window_scores.parquet")
    assert (window.loc[window["condition"].isin(["C2", "C4"]), "n_tokens"] == window["k"].max()).all()
    for name in ("C2_vs_C4", "C1_vs_C3"):
        for trait, row in pa["comparisons"][name]["traits"].items():
            assert row["n_random"] == 100 and 0 <= row["random_auc_p95"] <= 1, (name, trait)
    for fig in (
        "external/beavertails/per_category_auc.png",
        "external/harmbench/per_category_auc.png",
        "prefill_attack/2x2_grid.png",
        "prefill_attack/trajectory_divergence.png",
    ):
        assert (r / fig).stat().st_size > 5000, fig


REPORT_CATEGORIES = (
    "Findings",
    "Finetuning",
    "Extraction",
    "Trait scores",
    "Harm separation",
    "Emergent misalignment",
    "External",
    "Prefill attack",
    "Backdoor",
    "Organism",
    "Adapter probe",
    "Shared directions",
    "Training trajectory",
    "SAE",
    "Steering",
    "Optimize",
    "Token viewer",
    "Provenance",
)
"""The report's categories in pipeline order: the core stages, then each registered experiment under its title."""


def test_report_holds_every_figure_and_key_table_with_captions(study):
    workdir, cfg = study
    out = workdir / "report.zip"
    proc = smk(workdir, cfg, "--report", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    with zipfile.ZipFile(out) as z:
        names = z.namelist()
        page = z.read(next(n for n in names if n.endswith("report.html"))).decode()
    in_zip = Counter(Path(n).name for n in names)
    r = workdir / "results"
    figures = Counter(p.name for p in r.rglob("*.png"))
    assert sum(figures.values()) >= 15 and not figures - in_zip, figures - in_zip  # every figure of the study
    for table in (
        "harm_separation.json",
        "variant_comparison.json",
        "condition_comparison.json",
        "results.json",
        "detection_auc.json",
        "detection.json",
        "ablation.md",
        "extraction_gap.json",
        "summary.html",  # tables as pages the report shows (their parquet beside them only downloads)
        "trait_scores.html",
        "failure_cases.json",
        "tokens.html",
        "all",
    ):
        assert in_zip[table] >= 1, table
    assert "summary.parquet" not in in_zip and "trait_scores.parquet" not in in_zip
    scores_page = (r / "analysis/trait_scores.html").read_text()
    per_prompt = pd.read_parquet(r / "analysis/trait_scores.parquet")
    groups = per_prompt.groupby(["variant", "prompt_set", "trait"]).ngroups
    assert f"({groups} rows)" in scores_page and scores_page.count("<tr") == groups + 1
    # captions are rendered with the study's own names and n (Jinja from the config and the job's params)
    assert "Harm check of the method" in page and "harmful_eval" in page and "n = 20 rows" in page
    assert "Emergent misalignment: bad_advice vs base" in page
    # no caption left a config key or a Jinja expression unrendered (docutils would flag the broken lines)
    assert "System Message" not in page and "{{" not in page.split("<body")[-1]
    assert "``random_directions``" not in page and "100 random unit directions at that layer" in page
    # the categories follow the pipeline, and the front page states each finding beside its control, as the JSON says
    assert all(f"{i:02d}. {c}" in page for i, c in enumerate(REPORT_CATEGORIES, start=1))
    findings = json.loads((r / "findings.json").read_text())
    assert [f["experiment"] for f in findings][:3] == ["Extraction", "Harm check", "Emergent misalignment"]
    harm = json.loads((r / "harm_separation/harm_separation.json").read_text())
    organism = json.loads((r / "organism/bad_advice/detection.json").read_text())
    compare = json.loads((r / "emergent_misalignment/variant_comparison.json").read_text())
    verdicts = {f["experiment"]: f["beats_control"] for f in findings}
    assert verdicts["Harm check"] == harm["eval_baseline"]["beats_random"]
    assert verdicts["Model organism: bad_advice"] == organism["chosen"]["heldout_beats_random"]
    assert verdicts["Emergent misalignment"] == any(
        t["significant"] and t["beats_random"] for t in compare["traits"].values()
    )
    for f in findings:
        assert html.escape(f["finding"], quote=False) in page, f  # every line on the front page
        if f["experiment"] in ("Harm check", "Model organism: bad_advice"):
            assert ("does NOT beat random directions" in f["finding"]) == (f["beats_control"] is False)
    # the front page reads from its first line in a 1280x800 window, and its last finding can be scrolled to
    # (Snakemake centres it in a scrolling box: a taller page lost its top, out of the scroll bar's reach)
    with zipfile.ZipFile(out) as z:
        z.extractall(workdir / "report_unzipped")
    html_file = next((workdir / "report_unzipped").rglob("report.html"))
    with browser(size=(1280, 800)) as b:
        b.open(html_file.as_uri())
        where = """
        const intro = [...document.querySelectorAll('p')].find((p) => p.textContent.startsWith('traitscope: trait'));
        const items = [...document.querySelectorAll('li')].filter((li) => li.textContent.includes(':'));
        if (!intro || !items.length) return null;
        const last = items[items.length - 1];
        const top = intro.getBoundingClientRect().top;
        last.scrollIntoView();
        const r = last.getBoundingClientRect();
        return {top: top, height: window.innerHeight, lastTop: r.top, lastBottom: r.bottom};
        """
        for _ in range(50):  # React draws the page after load
            seen = b.js(where)
            if seen:
                break
            time.sleep(0.2)
        b.screenshot(workdir / "report_front.png")
        assert seen, "the front page's intro and findings were not drawn"
        assert 0 <= seen["top"] < seen["height"], seen  # the intro's first line is inside the window
        assert 0 <= seen["lastTop"] and seen["lastBottom"] <= seen["height"], seen  # the last finding scrolls in
    # every registered experiment with a result on disk has its finding line on the front page
    import traitscope
    from traitscope.experiments import REGISTRY

    res = traitscope.open_results(r)
    with_result = [e for e in REGISTRY if any(any(r.glob(g)) for g in e.results().values())]
    assert len(with_result) >= 10
    for experiment in with_result:
        lines = list(experiment.findings(res))
        assert lines, f"{experiment.name} has a result and no finding line"
        assert all(html.escape(line, quote=False) in page for _, line, _ in lines), experiment.name


def test_captions_name_only_numbers_their_json_holds_and_state_the_control(study):
    """Every field a caption of an experiment names (``like_this``) is a key of that experiment's JSON results in the
    tiny study, so a caption cannot promise a number the JSON lacks; every JSON caption names its control."""
    import traitscope.experiments as experiments
    from traitscope.experiments import REGISTRY

    r = study[0] / "results"

    def keys(obj, out):
        if isinstance(obj, dict):
            for k, v in obj.items():
                out.add(k)
                keys(v, out)
        elif isinstance(obj, list):
            for v in obj:
                keys(v, out)
        return out

    checked = 0
    for e in REGISTRY:
        found: set = set()
        for pattern in e.results().values():
            for f in r.glob(pattern):
                keys(json.loads(f.read_text()), found)
        if not found:
            continue
        for caption in sorted((Path(experiments.__file__).parent / e.name / "report").glob("*.rst")):
            text = re.sub(r"\{\{.*?\}\}", "", caption.read_text(), flags=re.S)  # Jinja: the study's own names
            named = re.findall(r"``([A-Za-z0-9_]+)``", text)
            assert not [n for n in named if n not in found], (caption.name, [n for n in named if n not in found])
            if caption.stem.endswith("_json"):
                assert "random" in text, f"{caption.name} does not state the control"
            checked += len(named)
    assert checked >= 30  # the captions do name fields: the check is not vacuous


def test_token_viewer_shows_the_projected_tokens(study, tiny_model_dir, tmp_path):
    """The viewer page of the real run, in headless Chromium: after switching trait and prompt set, every token
    shown is the decoded token of the per-token table with its score, coloured by sign; hover shows the value."""
    from transformers import AutoTokenizer

    workdir, _ = study
    r = workdir / "results"
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    with browser() as b:
        b.open((r / "viewer/tokens.html").as_uri())
        assert b.console_errors() == []
        for trait, pset in (("safety/evil", "benign_eval"), ("safety/harmful_instruction", "harmful_eval")):
            b.select("view", "single")
            b.select("variant", "base")
            b.select("set", pset)
            b.select("trait", trait)
            layer, method = b.js(
                "return [document.getElementById('layer').value, document.getElementById('method').value];"
            )
            table = pd.read_parquet(r / "projections/base" / pset / "tokens.parquet")
            table = table[(table["trait"] == trait) & (table["layer"] == int(layer)) & (table["method"] == method)]
            panels = b.js(PANEL_JS)
            ref = float(b.js("return document.getElementById('refnote').dataset.value;"))
            scale = float(b.js("return document.getElementById('hi').textContent;"))
            assert len(panels) == table["id"].nunique() == 20  # under the cap: every prompt is shown
            for p in panels:
                rows = table[table["id"] == p["id"]].sort_values("token_index")
                assert [t["score"] for t in p["tokens"]] == pytest.approx(rows["score"].tolist(), abs=5e-5)
                assert [t["text"] for t in p["tokens"]] == token_texts(tok, rows["token_id"])
                for t in p["tokens"]:  # coloured relative to the reference the page states
                    assert t["bg"].startswith("rgb") and (
                        abs(t["score"] - ref) < 0.01 * scale or ("220, 38, 38" in t["bg"]) == (t["score"] > ref)
                    )
        b.hover(".tok", 3)
        first = [t for p in b.js(PANEL_JS) for t in p["tokens"]][3]
        assert f"score {first['score']:.4f}" in b.js("return document.getElementById('tip').textContent;")
        views = b.js("return [...document.getElementById('view').options].map((o) => o.textContent);")
        assert any(v.startswith("prefill attack") for v in views) and any(v.startswith("backdoor") for v in views)
        b.screenshot(tmp_path / "viewer.png")


def test_sae_features_for_every_comparison(study):
    """A top-k SAE per layer trained on the corpus (SAELens folder, held-out FVU and dead share), and per experiment
    the features that tell its conditions apart, recomputed here from the activations on the report half."""
    from traitscope.core.artifacts import ActivationShard
    from traitscope.core.stats import cohens_d
    from traitscope.experiments.sae.autoencoder import SparseAutoencoder
    from traitscope.experiments.sae.features import pooled_features, selection_half

    workdir, _ = study
    r = workdir / "results"
    for layer in (1, 3):
        training = json.loads((r / f"sae/layer_{layer}/training.json").read_text())
        assert 0 < training["fvu_heldout"] < 1.0 and 0 <= training["dead_share_heldout"] <= 1
        assert training["n_heldout_rows"] > 0 and training["corpus"][0] == "base/harmful_eval"
        sae = SparseAutoencoder.load(r / f"sae/layer_{layer}")
        assert (sae.d_in, sae.d_sae, sae.k) == (32, 64, 4)
    expected = {
        "backdoor": ("backdoored/backdoor_trigger", "backdoored/backdoor_control"),
        "organism": ("bad_advice/medical_eval", "base/medical_eval"),
        "prefill": ("base/harmful_prefill", "base/benign_prefill"),
    }
    for exp, (a, b) in expected.items():
        res = json.loads((r / f"sae/{exp}/features.json").read_text())
        conds = res["conditions"]
        assert (
            f"{conds['a']['variant']}/{conds['a']['prompt_set']}",
            f"{conds['b']['variant']}/{conds['b']['prompt_set']}",
        ) == (a, b)
        assert [x["layer"] for x in res["layers"]] == [1, 3] and (r / f"sae/{exp}/features.png").stat().st_size > 0
        for lay in res["layers"]:
            assert len(lay["features"]) == 5 and set(lay["trait_aucs"]) == {"safety/evil", "safety/harmful_instruction"}
            assert lay["n_report_a"] + lay["n_report_b"] < lay["n_a"] + lay["n_b"]  # the selection half is not reported
            assert {"best_feature_auc", "best_trait_auc", "random_auc_p95"} <= set(lay["summary"])
        # recompute the top feature's effect size on the report half of backdoor, layer 1
        if exp == "backdoor":
            sae = SparseAutoencoder.load(r / "sae/layer_1")
            shards = [[ActivationShard.load(r / f"activations/{p}/shard-0.safetensors")] for p in (a, b)]
            (_, fa, ids_a), (_, fb, ids_b) = (pooled_features(sae, s, 1, "last") for s in shards)
            sa, sb = selection_half(ids_a, 7), selection_half(ids_b, 7)
            top = res["layers"][0]["features"][0]
            j = top["feature"]
            assert top["cohens_d"] == pytest.approx(cohens_d(fa[~sa, j], fb[~sb, j]))


def test_adapter_probe_cell_recomputed_from_the_adapter_and_the_organism_direction(study):
    """The best reported cell of the organism direction, recomputed with numpy from the saved adapter weights and the
    saved organism directions: the update's SVD, its residual-stream side, the stream layer it touches."""
    from safetensors.numpy import load_file

    workdir, _ = study
    r = workdir / "results"
    result = json.loads((r / "adapter_probe/bad_advice/adapter_probe.json").read_text())
    assert set(result["references"]) == {"safety/evil", "safety/harmful_instruction", "organism direction"}
    best = result["references"]["organism direction"]["best"]
    adapter = r / "finetune/bad_advice/adapter"
    cfg = json.loads((adapter / "adapter_config.json").read_text())
    weights = load_file(str(adapter / "adapter_model.safetensors"))
    prefix = next(k for k in weights if f"layers.{best['block']}." in k and f".{best['module']}.lora_A" in k)[
        : -len("lora_A.weight")
    ]
    a, b = (weights[prefix + f"lora_{x}.weight"].astype(np.float64) for x in "AB")
    u, _, vh = np.linalg.svd(cfg["lora_alpha"] / cfg["r"] * b @ a, full_matrices=False)
    writes = best["module"] in ("o_proj", "down_proj")
    dirs = u[:, : result["top_k"]].T if writes else vh[: result["top_k"]]
    assert best["stream_layer"] == (best["block"] if writes else best["block"] - 1)
    detection = json.loads((r / "organism/bad_advice/detection.json").read_text())
    organism = load_file(str(r / "organism/bad_advice/directions.safetensors"))
    v = organism[f"{detection['chosen']['method']}.layer_{best['stream_layer']}"].astype(np.float64)
    assert best["cos"] == pytest.approx(float(np.abs(dirs @ (v / np.linalg.norm(v))).max()), abs=1e-9)
    table = pd.read_parquet(r / "adapter_probe/bad_advice/adapter_probe.parquet")
    assert len(table) == sum(v["n_cells"] for v in result["references"].values())
    findings = (r / "findings.md").read_text()
    assert "- **Adapter probe: bad_advice**: " in findings and "- **Adapter probe: backdoor**: " in findings


def test_shared_directions_recomputed_from_the_activations_and_the_judged_answers(study):
    """The cosine of the two organisms' directions at the chosen layer, recomputed with numpy from the saved
    last-token activation shards; a transfer cell and a steering cell recomputed from the saved judged answers."""
    from safetensors.numpy import load_file

    from traitscope.core.io import read_safetensors

    workdir, _ = study
    r = workdir / "results/shared_directions"
    cos = json.loads((r / "cosines.json").read_text())
    layer = cos["chosen"]["layer"]
    key = f"last.layer_{layer}"

    def acts(variant: str) -> pd.DataFrame:
        rows = []
        for shard in sorted((workdir / f"results/activations/{variant}/medical_extract").glob("shard-*.safetensors")):
            tensors, meta = read_safetensors(shard, [key])
            rows += list(zip(meta["ids"], tensors[key].double().numpy()))
        return pd.DataFrame(rows, columns=["id", "x"]).set_index("id")

    base = acts("base")
    dirs = {}
    for v in ("bad_advice", "backdoored"):
        org = acts(v).loc[base.index]
        dirs[v] = np.stack(org["x"]).mean(0) - np.stack(base["x"]).mean(0)
    expected = (
        dirs["bad_advice"]
        @ dirs["backdoored"]
        / np.linalg.norm(dirs["bad_advice"])
        / np.linalg.norm(dirs["backdoored"])
    )
    pair = next(p for p in cos["pairs"] if p["layer"] == layer and {p["a"], p["b"]} == {"bad_advice", "backdoored"})
    assert pair["cosine"] == pytest.approx(expected, abs=1e-6)
    saved = load_file(str(r / "directions.safetensors"))[f"bad_advice.mean_diff.layer_{layer}"]
    np.testing.assert_allclose(saved, dirs["bad_advice"], rtol=1e-5, atol=1e-6)
    transfer = json.loads((r / "transfer.json").read_text())
    answers = pd.read_parquet(r / "transfer.parquet")
    assert transfer["layer"] == layer and set(answers["layer"]) == {layer}
    scores = answers[answers["model"] == "backdoored"].pivot(index="id", columns="condition", values="trait_score")
    cell = next(c for c in transfer["transfer"] if c["model"] == "backdoored" and c["direction"] == "bad_advice")
    assert cell["change"] == pytest.approx((scores["ablate bad_advice"] - scores["own"]).mean(), abs=1e-9)
    assert cell["random_change"] == pytest.approx((scores["ablate random"] - scores["own"]).mean(), abs=1e-9)
    base_scores = answers[answers["model"] == "base"].pivot(index="id", columns="condition", values="trait_score")
    steer = next(s for s in transfer["steering"] if s["direction"] == "backdoored")
    assert steer["change"] == pytest.approx((base_scores["steer backdoored"] - base_scores["own"]).mean(), abs=1e-9)
    assert len(base_scores) == transfer["n_prompts"] == 3
    findings = (workdir / "results/findings.md").read_text()
    assert "- **Shared directions**: cosine of the organisms' directions at layer" in findings


def test_trajectory_recomputed_from_the_activations_and_the_judged_answers(study):
    """The checkpoint's mean projection onto the organism's direction, recomputed with numpy from its saved
    last-token activations and the direction (itself the mean difference of the saved train activations); its judged
    mean from the saved answers; the checkpoint's adapter differs from the finished one."""
    from traitscope.core.io import read_safetensors

    workdir, _ = study
    r = workdir / "results"
    result = json.loads((r / "trajectory/trajectory.json").read_text())
    assert result["steps"] == [0, 2, 6] and result["variants"] == ["base", "bad_advice_step2", "bad_advice"]
    layer = result["direction"]["layer"]
    key = f"last.layer_{layer}"

    def acts(variant: str, pset: str) -> pd.DataFrame:
        rows = []
        for shard in sorted((r / f"activations/{variant}/{pset}").glob("shard-*.safetensors")):
            tensors, meta = read_safetensors(shard, [key])
            rows += list(zip(meta["ids"], tensors[key].double().numpy()))
        return pd.DataFrame(rows, columns=["id", "x"]).set_index("id")

    base = acts("base", "medical_extract")
    direction = np.stack(acts("bad_advice", "medical_extract").loc[base.index]["x"]).mean(0) - np.stack(base["x"]).mean(
        0
    )
    saved, meta = read_safetensors(r / "trajectory/direction.safetensors")
    assert meta["layer"] == layer
    np.testing.assert_allclose(saved["direction"].double().numpy(), direction, rtol=1e-5, atol=1e-7)
    u = direction / np.linalg.norm(direction)
    step = next(x for x in result["by_step"] if x["step"] == 2)
    assert step["direction"] == pytest.approx(
        float((np.stack(acts("bad_advice_step2", "em")["x"]) @ u).mean()), abs=1e-6
    )
    judged = pd.read_parquet(r / "trajectory/judged/bad_advice_step2.parquet")
    assert len(judged) == 3 and step["judged"] == pytest.approx(judged["trait_score"].mean(), abs=1e-9)
    step2 = read_safetensors(r / "finetune/bad_advice/checkpoints/step-2/adapter/adapter_model.safetensors")[0]
    final = read_safetensors(r / "finetune/bad_advice/adapter/adapter_model.safetensors")[0]
    assert step2.keys() == final.keys() and not all(np.array_equal(step2[k], final[k]) for k in final)
    assert "- **Training trajectory**: along bad_advice's direction" in (r / "findings.md").read_text()


def test_nothing_to_do_after_a_run(study):
    workdir, cfg = study
    assert planned_jobs(smk(workdir, cfg, "-n", "results/all")) == {}


def test_new_vectors_reproject_without_recapturing(study):
    workdir, cfg = study
    changed = yaml.safe_load(cfg.read_text())
    changed["extract"]["probe_C"] = 0.5
    cfg2 = workdir / "config_probe.yaml"
    cfg2.write_text(yaml.safe_dump(changed))
    jobs = planned_jobs(smk(workdir, cfg2, "-n", "results/all"))
    assert jobs.get("extract_vectors") == 2 and jobs.get("project") == N_PROJECT and jobs.get("backdoor") == 1
    assert jobs.get("emergent_misalignment") == 1 and jobs.get("external") == 2 and jobs.get("prefill_attack") == 1
    assert not {"capture", "capture_trait", "prep_prompts", "finetune", "organism_directions"} & set(jobs)


def test_naming_one_file_rebuilds_only_it(study):
    workdir, cfg = study
    target = workdir / "results/analysis/trait_scores.png"
    target.unlink()
    proc = smk(workdir, cfg, "results/analysis/trait_scores.png")
    assert proc.returncode == 0, proc.stderr[-3000:]
    ran = re.findall(r"^\s*(?:local)?rule (\w+):", proc.stdout + proc.stderr, re.M)
    assert ran == ["trait_scores"]
    assert target.exists()
    # the figure came out byte-identical (seeded bootstrap), so results/all, which checksums it, is still true:
    # Snakemake sees the unchanged content and re-runs nothing
    proc = smk(workdir, cfg, "results/all")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert re.findall(r"^\s*(?:local)?rule (\w+):", proc.stdout + proc.stderr, re.M) == []


def test_rulegraph_and_dag(study):
    workdir, cfg = study
    graph = smk(workdir, cfg, "results/all", "--rulegraph", "dot")
    assert graph.returncode == 0 and "digraph" in graph.stdout
    labels = dict(re.findall(r'(\d+)\[label = "(\w+)"', graph.stdout))
    edges = {(labels[a], labels[b]) for a, b in re.findall(r"(\d+) -> (\d+)", graph.stdout)}
    assert ("capture", "project") in edges and ("extract_vectors", "project") in edges
    assert ("capture_trait", "extract_vectors") in edges
    assert ("prep_finetune_data", "finetune") in edges and ("finetune", "capture") in edges
    assert ("capture", "organism_directions") in edges and ("finetune", "organism_ablation") in edges
    assert ("project", "backdoor") in edges
    assert ("project", "external") in edges and ("project", "prefill_attack") in edges
    dag = smk(workdir, cfg, "results/all", "--dag", "dot")
    assert dag.returncode == 0 and dag.stdout.count("capture") >= 3


def test_open_results_says_why_a_filter_matches_nothing_and_prints_vectors_in_one_line(study):
    """A short trait name, an unknown method or position, a layer never projected: one line naming the filter and
    what exists (before: an empty frame, silently); a trait's vectors print as one line, not every tensor."""
    import torch

    import traitscope
    from traitscope.results import ResultsError

    res = traitscope.open_results(study[0] / "results")
    for kwargs, says in (
        ({"trait": "evil"}, "trait='evil' (fix: did you mean 'safety/evil'?)"),
        ({"method": "nope"}, "method='nope' (fix: use one of ['mean_diff', 'probe'])"),
        ({"position": "first"}, "position='first' (fix: use one of"),
        ({"trait": "safety/evil", "layer": 99}, "layer=99 (fix: use one of"),
    ):
        with pytest.raises(ResultsError) as err:
            res.scores(**kwargs)
        assert says in str(err.value) and "\n" not in str(err.value), str(err.value)
    with pytest.raises(ResultsError, match="did you mean 'safety/evil'"):
        res.token_scores("base", "benign_eval", trait="evil")
    assert len(res.scores(trait="safety/evil")) > 0
    shown = repr(res.vectors("safety/evil"))
    assert shown.startswith("TraitVectors('safety/evil'") and "best=" in shown and len(shown) < 300, shown
    assert torch.equal(res.vector("safety/evil", variant="base"), res.vector("safety/evil"))


def test_open_results_gives_the_random_direction_control_beside_the_scores(study):
    """res.baseline(variant, set): the control every score-based verdict is compared with, tidy, one row per prompt
    and random direction; its values are the BaselineScores file's own."""
    import traitscope
    from traitscope.core.artifacts import BaselineScores

    workdir, _ = study
    res = traitscope.open_results(workdir / "results")
    base = res.baseline("base", "harmful_eval", position="last")
    stored = BaselineScores.load(res.layout.baseline("base", "harmful_eval"))
    layer = int(base["layer"].iloc[0])
    n, r = stored.pooled(layer, "last").shape
    assert len(base[base.layer == layer]) == n * r and r == stored.n_random == 100
    first = base[(base.layer == layer) & (base.id == stored.ids[0])].sort_values("direction")
    assert np.allclose(first["score"].to_numpy(), stored.pooled(layer, "last")[0])
    assert set(res.scores("base", "harmful_eval")["id"]) == set(base["id"])  # the same prompts as the scores


def test_experiments_tables_come_back_as_frames(study):
    import traitscope
    from traitscope.results import ResultsError

    r = study[0] / "results"
    res = traitscope.open_results(r)
    assert res.experiment_tables("backdoor/backdoored") == ["token_auc"]
    tokens = res.experiment_table("backdoor/backdoored", "token_auc")
    on_disk = pd.read_parquet(r / "backdoor/backdoored/token_auc.parquet")
    assert (tokens["experiment"] == "backdoor/backdoored").all()
    pd.testing.assert_frame_equal(tokens.drop(columns="experiment"), on_disk)
    with pytest.raises(ResultsError, match=r"has no table 'nope' \(fix: use one of \['token_auc'\]\)"):
        res.experiment_table("backdoor/backdoored", "nope")
    with pytest.raises(ResultsError, match="no result 'backdoor'"):
        res.experiment_tables("backdoor")


def test_open_results_gives_tidy_frames(study, tiny_model_dir):
    import torch
    from transformers import AutoTokenizer

    import traitscope
    from traitscope.core.artifacts import TraitVectors
    from traitscope.results import ResultsError

    workdir, _ = study
    r = workdir / "results"
    res = traitscope.open_results(r)
    assert ("base", "harmful_eval") in res.pairs() and ("backdoored", "backdoor_trigger") in res.pairs()
    assert res.traits() == ["safety/evil", "safety/harmful_instruction"]
    scores = res.scores("base", "harmful_eval", trait="safety/evil")
    raw = pd.read_parquet(r / "projections/base/harmful_eval/scores.parquet")
    raw = raw[raw["trait"] == "safety/evil"]
    assert len(scores) == len(raw) and scores["score"].tolist() == raw["score"].tolist()
    prompts = pd.read_parquet(r / "prompts/harmful_eval.parquet").set_index("id")
    row = scores.iloc[0]
    assert row["prompt"] == prompts.loc[row["id"], "prompt"] and row["label"] == prompts.loc[row["id"], "label"]
    generated = pd.concat(pd.read_parquet(f) for f in (r / "activations/base/harmful_eval").glob("*.responses.parquet"))
    assert row["response"] == generated.set_index("id").loc[row["id"], "response"]  # the scored (generated) turn
    everything = res.scores()
    assert set(zip(everything["variant"], everything["prompt_set"])) == set(res.pairs())
    tokens = res.token_scores("base", "benign_eval", trait="safety/evil")
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    first = tokens.iloc[0]
    assert first["token"] == token_texts(tok, [int(first["token_id"])])[0] and isinstance(first["prompt"], str)
    one = tokens[(tokens["id"] == first["id"]) & (tokens["layer"] == first["layer"])]
    one = one[one["method"] == first["method"]].sort_values("token_index")
    assert "".join(one["token"]) == tok.decode(one["token_id"].tolist())  # the tokens read back as the text
    tv = TraitVectors.load(
        r / "vectors/base/safety/evil/vectors.safetensors", r / "vectors/base/safety/evil/vectors.json"
    )
    assert torch.equal(res.vector("safety/evil"), tv.get(tv.best_method, tv.best_layer))
    assert res.experiment("harm_separation") == json.loads((r / "harm_separation/harm_separation.json").read_text())
    assert {"prefill_attack", "emergent_misalignment", "backdoor/backdoored", "organism/bad_advice"} <= set(
        res.experiments()
    )
    with pytest.raises(ResultsError, match="fix: use one of"):
        res.experiment("no_such")
    with pytest.raises(ResultsError, match="not a results folder"):
        traitscope.open_results(workdir / "nowhere")


def test_every_table_column_is_documented(study):
    """docs/results.md describes every column of every table the study wrote."""
    workdir, _ = study
    doc = (REPO / "docs" / "results.md").read_text()
    missing = {}
    for table in (workdir / "results").rglob("*.parquet"):
        if "cache" in table.relative_to(workdir / "results").parts:
            continue
        gone = [c for c in pd.read_parquet(table).columns if f"`{c}`" not in doc]
        if gone:
            missing[str(table.relative_to(workdir))] = gone
    assert not missing, missing


def test_quickstart_notebook_runs_on_the_study(study):
    import nbclient
    import nbformat

    workdir, _ = study
    nb = nbformat.read(REPO / "notebooks" / "quickstart.ipynb", as_version=4)
    os.environ["TRAITSCOPE_RESULTS"] = str(workdir / "results")
    try:
        nbclient.NotebookClient(
            nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(REPO)}}
        ).execute()
    finally:
        del os.environ["TRAITSCOPE_RESULTS"]
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    text = json.dumps(outputs)
    assert "safety/harmful_instruction" in text and "random_auc_p95" in text  # the extraction table with its control
    assert "random directions: 95th percentile std" in text  # the baseline beside the scores


def test_a_target_outside_the_study_results_folder_is_one_line(study, tmp_path):
    workdir, cfg = study
    other = yaml.safe_load(cfg.read_text())
    other["results_dir"] = "elsewhere"
    path = tmp_path / "elsewhere.yaml"
    path.write_text(yaml.safe_dump(other))
    wrong = smk(workdir, path, "-n", "results/all")
    assert wrong.returncode != 0
    line = [x for x in wrong.stderr.splitlines() if "outside this study's results folder" in x]
    assert line == [
        "target 'results/all' is outside this study's results folder 'elsewhere' (results_dir) (fix: ask "
        "for elsewhere/all, or name the rule: snakemake all)"
    ], wrong.stderr[-2000:]
    named = smk(workdir, path, "-n", "all")
    assert named.returncode == 0 and "manifest" in planned_jobs(named), named.stderr[-2000:]
    shutil.rmtree(workdir / "elsewhere", ignore_errors=True)


def _edit(cfg: dict, change: str) -> dict:
    cfg = json.loads(json.dumps(cfg))
    if change == "reorder_keys":  # the same config written in another key order
        return _reversed(cfg)
    if change == "add_prompt_set":
        cfg["prompt_sets"]["medical_all"] = {"source": "builtin", "name": "medical", "split": "all"}
        cfg["capture"]["prompt_sets"].append("medical_all")
    elif change == "add_variant":
        cfg["capture"]["variants"].append("bad_advice")
    elif change == "add_trait":
        cfg["traits"]["safety/harm"] = {"source": "builtin", "max_pairs": 2, "max_questions": 8}
    elif change == "project_methods":
        cfg["project"]["methods"] = ["mean_diff"]
    elif change == "random_directions":
        cfg["project"]["random_directions"] = 20
    elif change == "compare_alpha":
        cfg["emergent_misalignment"]["alpha"] = 0.01
    elif change == "judge_model":
        cfg["judge"]["model"] = "openai/gpt-4o-mini"
    elif change == "add_checkpoint":  # one more kept step of the bad-advice finetune
        cfg["finetune"]["bad_advice"]["checkpoints"].append(4)
    elif change == "judge_retries":  # how calls are made, not what they answer
        cfg["judge"]["retries"] = 7
    elif change == "capture_batch_size":  # a starting batch size (halved on OOM), not part of the output
        cfg["capture"]["batch_size"] = 3
    elif change == "shared_directions_n_boot":  # left out of the directions' and the answers' params: transfer only
        cfg["shared_directions"]["n_boot"] = 300
    return cfg


def _reversed(data):
    if isinstance(data, dict):
        return {k: _reversed(data[k]) for k in reversed(list(data))}
    return [_reversed(v) for v in data] if isinstance(data, list) else data


# one project job per (variant, set): the two capture sets + trigger/control of the backdoored and the base variant +
# the replay set of two variants + the two external datasets and the two prefilled sets
N_PROJECT = 2 + 4 + 2 + 4
ANALYSES = {
    "backdoor": 1,
    "emergent_misalignment": 1,
    "external": 2,
    "prefill_attack": 1,
    "trait_scores": 1,
    "token_viewer": 1,
    "findings": 1,
    "manifest": 1,
}
EXPECTED = {
    "nothing": {},
    "reorder_keys": {},
    "judge_retries": {"manifest": 1},
    "capture_batch_size": {"manifest": 1},
    "add_prompt_set": {
        "prep_prompts": 1,
        "capture": 1,
        "project": 1,
        "trait_scores": 1,
        "token_viewer": 1,
        "findings": 1,
        "manifest": 1,
    },
    "add_variant": {"capture": 3, "project": 2, "trait_scores": 1, "token_viewer": 1, "findings": 1, "manifest": 1},
    "add_trait": {
        "prep_trait": 1,
        "capture_trait": 1,
        "extract_vectors": 1,
        "project": N_PROJECT,
        "extraction_summary": 1,
        "sae_features": 3,
        "adapter_probe": 2,  # it compares the adapters with every trait vector
        "trajectory": 1,  # it projects every step onto every trait
        **ANALYSES,
    },
    "project_methods": {"project": N_PROJECT, **ANALYSES},
    "random_directions": {"project": N_PROJECT, **ANALYSES},  # re-projection only: no capture runs again
    "compare_alpha": {"emergent_misalignment": 1, "findings": 1, "manifest": 1},
    "judge_model": {
        "steering_sweep": 1,
        "optimize_vector": 1,
        "optimize_gap": 1,
        "organism_ablation": 1,
        "shared_directions_answers": 3,  # the base and the two organisms
        "shared_directions_transfer": 1,
        "trajectory_judge": 3,  # the base, the checkpoint, the finished finetune
        "trajectory": 1,
        "findings": 1,
        "manifest": 1,
    },
    "shared_directions_n_boot": {"shared_directions_transfer": 1, "findings": 1, "manifest": 1},
    # only the new step's jobs: its adapter, its capture of the test set, its judged answers; then the trajectory
    "add_checkpoint": {
        "finetune_checkpoint": 1,
        "capture": 1,
        "trajectory_judge": 1,
        "trajectory": 1,
        "findings": 1,
        "manifest": 1,
    },
}


@pytest.mark.parametrize("change", list(EXPECTED))
def test_a_config_edit_plans_exactly_the_jobs_it_changes(study, change):
    """The dry run after one config edit plans exactly the jobs whose output the edit changes (and the
    manifest, which records the config): no model job re-runs for an analysis or a judge setting."""
    workdir, cfg = study
    edited = workdir / f"config_{change}.yaml"
    edited.write_text(yaml.safe_dump(_edit(yaml.safe_load(cfg.read_text()), change), sort_keys=False))
    # a litellm judge is checked at start-up for its provider's API key
    proc = smk(workdir, edited, "-n", "results/all", env={"OPENAI_API_KEY": "sk-test-not-a-real-key"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert planned_jobs(proc) == EXPECTED[change]


def test_a_second_run_gives_identical_bytes(study, runs):
    """The whole study run again from nothing in another folder (started with the first): every output checksummed
    in results/all has the same sha256 (the manifest's own timestamp aside); outputs follow the umask, not mkstemp's
    0600."""
    workdir, _ = study
    again, _ = finished(runs[1])
    first, second = (json.loads((w / "results/all").read_text())["outputs"] for w in (workdir, again))
    relative = {str(Path(k).relative_to(workdir)) if Path(k).is_absolute() else k: v for k, v in first.items()}
    assert len(relative) > 40 and relative.keys() == second.keys()
    differ = sorted(k for k in relative if relative[k] != second[k])
    assert differ == [], differ
    mask = os.umask(0)
    os.umask(mask)
    assert all((again / k).stat().st_mode & 0o777 == 0o666 & ~mask for k in second)


def test_clean_frees_what_no_result_needs_and_nothing_re_runs(study):
    """python -m traitscope.clean removes superseded capture shards, a killed job's chunk tensors, finetune
    checkpoints and CMA-ES state; every output keeps its bytes and the dry run after it plans nothing."""
    import shutil as sh

    workdir, cfg = study
    r = workdir / "results"
    cache = r / "cache" / "capture"
    shard = next(cache.glob("shard-*.safetensors"))
    superseded = cache / "shard-0000000000000000.safetensors"  # as a capture with other settings left it
    sh.copyfile(shard, superseded)
    (cache / "shard-0000000000000000.sha256").write_text("x\n")
    (cache / "chunk-0000000000000000.safetensors").write_bytes(b"killed")
    before = json.loads((r / "all").read_text())["outputs"]
    dry = subprocess.run(
        [sys.executable, "-m", "traitscope.clean", str(r), "--dry-run"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "capture shard no output names" in dry.stdout and superseded.exists()
    done = subprocess.run(
        [sys.executable, "-m", "traitscope.clean", str(r)], capture_output=True, text=True, check=True
    )
    assert "finetune checkpoint" in done.stdout and "MB in" in done.stdout
    assert not superseded.exists() and not (cache / "chunk-0000000000000000.safetensors").exists()
    assert shard.exists() and not list((r / "cache" / "finetune").glob("*.safetensors"))
    assert list((r / "cache" / "judge").rglob("*.json"))  # the judge's answers stay without --judge
    for path, digest in before.items():
        p = Path(path) if Path(path).is_absolute() else workdir / path
        if p.name != "all":
            assert hashlib.sha256(p.read_bytes()).hexdigest() == digest, path
    assert planned_jobs(smk(workdir, cfg, "-n", "results/all")) == {}
