"""The per-token viewer: what the page holds (exact against the tables), its caps, and the page in a real browser."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
import torch
from browser import PANEL_JS, browser
from conftest import REPO

from traitscope.study import section
from traitscope.viewer import Comparison, Panel, build_data, render, sample_ids, token_bands, write_viewer

WORDS = ["The", " cat", " sat", " on", " the", " mat", ".", " Sure", ",", " here", " is", " how", " </script>", " <b>"]


def token_table(
    ids: list[str], n_tokens: dict[str, int], traits: list[str], layers: list[int], seed: int, prefill: int = 0
) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for trait in traits:
        for layer in layers:
            for method in ("mean_diff", "probe"):
                for i in ids:
                    for k in range(n_tokens[i]):
                        rows.append(
                            {
                                "id": i,
                                "token_index": k,
                                "token_id": (k * 7 + len(i)) % len(WORDS),
                                "is_prefill": k < prefill,
                                "trait": trait,
                                "method": method,
                                "layer": layer,
                                "score": np.float32(rng.normal(0, 3)),
                            }
                        )
    return (
        pd.DataFrame(rows).sample(frac=1.0, random_state=seed).reset_index(drop=True)
    )  # stored order is not read order


def decode(ids: list[int]) -> list[str]:
    return [WORDS[i] for i in ids]


@pytest.fixture
def study_tables():
    """Two variants x three sets: a replayed set scored by both, a trigger/control pair sharing ids."""
    ids = [f"q{i:02d}" for i in range(12)]
    lengths = {i: 3 + (k % 5) for k, i in enumerate(ids)}
    traits = ["safety/evil", "safety/harm"]
    tables = {
        ("base", "replay"): token_table(ids, lengths, traits, [2, 3], seed=1),
        ("ft", "replay"): token_table(ids, lengths, traits, [2, 3], seed=2),
        ("ft", "trigger"): token_table(ids[:6], lengths, traits, [2, 3], seed=3, prefill=2),
        ("ft", "control"): token_table(ids[:6], lengths, traits, [2, 3], seed=4),
    }
    prompts = {
        s: pd.DataFrame({"id": ids, "prompt": [f"{s} prompt {i} </script>" for i in ids]})
        for s in ("replay", "trigger", "control")
    }
    return tables, prompts


def build(tables, prompts, bands=None, chosen=None, **viewer):
    settings = section("viewer", viewer)
    comparisons = [
        Comparison("ft vs base", (Panel("base", "base", "replay"), Panel("ft", "ft", "replay"))),
        Comparison("trigger vs control", (Panel("trigger", "ft", "trigger"), Panel("control", "ft", "control"))),
        Comparison("absent", (Panel("a", "nope", "replay"), Panel("b", "ft", "replay"))),
    ]

    def read(panel, ids):
        t = tables[panel]
        return t[t["id"].isin(ids)], prompts[panel[1]]

    return build_data(
        {k: sorted(set(t["id"])) for k, t in tables.items()},
        read,
        {"base": decode, "ft": decode},
        comparisons,
        settings,
        seed=7,
        bands=(
            lambda panel, ids: (
                token_bands(bands[panel], ids, {"safety/evil": "resid"}, settings.max_tokens) if panel in bands else {}
            )
        )
        if bands
        else None,
        chosen=chosen,
    )


def expected_scores(table: pd.DataFrame, i: str, trait: str, method: str, layer: int) -> list[float]:
    rows = table[
        (table["id"] == i) & (table["trait"] == trait) & (table["method"] == method) & (table["layer"] == layer)
    ]
    return rows.sort_values("token_index")["score"].astype(float).tolist()


def test_sample_is_seeded_capped_and_shared_by_sets_with_the_same_ids():
    ids = [f"id{i}" for i in range(100)]
    a = sample_ids(ids, 10, seed=3)
    assert len(a) == 10 and a == sorted(a) and set(a) <= set(ids)
    assert sample_ids(list(reversed(ids)), 10, seed=3) == a  # input order does not matter
    assert sample_ids(ids, 10, seed=4) != a
    assert sample_ids(ids[:5], 10, seed=3) == ids[:5]


def test_page_data_equal_the_token_tables(study_tables):
    tables, prompts = study_tables
    data = build(tables, prompts)
    assert data["traits"] == ["safety/evil", "safety/harm"] and data["layers"]["safety/evil"] == [2, 3]
    assert data["totals"] == {"base|replay": 12, "ft|replay": 12, "ft|trigger": 6, "ft|control": 6}
    for key, table in (("ft|trigger", tables[("ft", "trigger")]), ("base|replay", tables[("base", "replay")])):
        for row, shown in enumerate(data["prompts"][key]):
            ordered = table[
                (table["id"] == shown["id"])
                & (table["trait"] == "safety/harm")
                & (table["layer"] == 3)
                & (table["method"] == "probe")
            ].sort_values("token_index")
            assert shown["t"] == [WORDS[t] for t in ordered["token_id"]]
            assert shown["p"] == [int(b) for b in ordered["is_prefill"]]
            got = data["scores"][key]["safety/harm|probe|3"][row]
            assert got == pytest.approx(expected_scores(table, shown["id"], "safety/harm", "probe", 3), abs=5e-5)
    # one colour scale per trait/method/layer across panels: the 99th percentile of |score| of every shown token
    shown = [x for key in data["scores"] for row in data["scores"][key]["safety/evil|mean_diff|2"] for x in row]
    assert data["scale"]["safety/evil|mean_diff|2"] == pytest.approx(np.percentile(np.abs(shown), 99), abs=1e-4)
    # a comparison whose panels are not all present keeps the present ones; one with fewer than two is dropped
    assert [c["name"] for c in data["comparisons"]] == ["ft vs base", "trigger vs control"]


def test_caps_on_prompts_and_tokens_are_applied_and_stated(study_tables):
    tables, prompts = study_tables
    data = build(tables, prompts, max_prompts=4, max_tokens=3)
    assert data["caps"] == {"max_prompts": 4, "max_tokens": 3, "seed": 7}
    assert all(len(v) == 4 for v in data["prompts"].values())
    # sets with the same ids show the same prompts, so side-by-side rows line up
    assert [p["id"] for p in data["prompts"]["base|replay"]] == [p["id"] for p in data["prompts"]["ft|replay"]]
    for p in data["prompts"]["ft|replay"]:
        assert len(p["t"]) == min(3, p["n"]) and p["n"] >= 3
    assert all(len(r) <= 3 for r in data["scores"]["ft|replay"]["safety/evil|probe|2"])
    page = render(data)
    assert "viewer.max_prompts" in page and "viewer.max_tokens" in page and "more tokens not shown" in page


def test_page_is_self_contained_and_data_cannot_break_out(study_tables, tmp_path):
    tables, prompts = study_tables
    data = build(tables, prompts)
    size = write_viewer(tmp_path / "v.html", data)
    page = (tmp_path / "v.html").read_text()
    assert size == len(page.encode())
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)  # no CDN, no network
    assert "<link" not in page and "@import" not in page
    embedded = re.search(r'<script id="data" type="application/json">(.*?)</script>', page, re.S).group(1)
    assert json.loads(embedded) == json.loads(json.dumps(data))  # "</script>" in a prompt or token stays data


def colour_sign(css: str) -> int:
    """+1 for the red (towards the trait) scale, -1 for blue, 0 for no colour."""
    nums = [float(x) for x in re.findall(r"[\d.]+", css)] + [1.0]  # rgb() is full alpha
    if len(nums) < 4 or nums[3] == 0:
        return 0
    return 1 if nums[:3] == [220, 38, 38] else -1 if nums[:3] == [37, 99, 235] else 99


def test_viewer_in_a_real_browser(study_tables, tmp_path):
    """Headless Chromium opens the page from file://, switches trait, layer, variant and prompt set and a
    comparison view; every token shown carries the table's score, is coloured by its sign, and hover shows it."""
    tables, prompts = study_tables
    data = build(tables, prompts)
    write_viewer(tmp_path / "v.html", data)
    with browser() as b:
        b.open((tmp_path / "v.html").as_uri())
        assert b.console_errors() == []
        assert b.js("return document.getElementById('view').value;") == "0"  # opens on the first comparison
        b.select("view", "single")
        for trait, layer, method, variant, pset in (
            ("safety/evil", "2", "mean_diff", "base", "replay"),
            ("safety/harm", "3", "probe", "ft", "trigger"),
        ):
            b.select("trait", trait)
            b.select("layer", layer)
            b.select("method", method)
            b.select("variant", variant)
            b.select("set", pset)
            panels = b.js(PANEL_JS)
            ref = float(b.js("return document.getElementById('refnote').dataset.value;"))
            scale = float(b.js("return document.getElementById('hi').textContent;"))
            table = tables[(variant, pset)]
            assert [p["id"] for p in panels] == [p["id"] for p in data["prompts"][f"{variant}|{pset}"]]
            for p in panels:
                want = expected_scores(table, p["id"], trait, method, int(layer))
                assert [t["score"] for t in p["tokens"]] == pytest.approx(want, abs=5e-5)
                ordered = table[
                    (table["id"] == p["id"])
                    & (table["trait"] == trait)
                    & (table["layer"] == int(layer))
                    & (table["method"] == method)
                ].sort_values("token_index")
                assert [t["text"] for t in p["tokens"]] == [WORDS[i] for i in ordered["token_id"]]
                assert [t["pre"] for t in p["tokens"]] == ordered["is_prefill"].tolist()
                for t in p["tokens"]:
                    if abs(t["score"] - ref) > 0.01 * scale:  # coloured relative to the stated reference
                        assert colour_sign(t["bg"]) == (1 if t["score"] > ref else -1), t
        b.hover(".tok", 5)
        tip = b.js("return document.getElementById('tip').textContent;")
        fifth = [t for p in b.js(PANEL_JS) for t in p["tokens"]][5]
        assert (
            f"score {fifth['score']:.4f}" in tip
            and b.js("return getComputedStyle(document.getElementById('tip')).display;") == "block"
        )
        b.select("view", "1")  # trigger vs control, side by side (and their difference: here the same tokens)
        panels = [p for p in b.js(PANEL_JS) if p["panel"] != "diff"]
        assert {p["panel"] for p in panels} == {"ft|trigger", "ft|control"}
        assert len(panels) == 2 * len(data["prompts"]["ft|trigger"])
        notes = b.js("return document.getElementById('notes').textContent;")
        assert "6 of 6 prompts" in notes and "viewer.max_prompts" in notes
        b.screenshot(tmp_path / "viewer.png")
        assert b.console_errors() == []
    assert (tmp_path / "viewer.png").stat().st_size > 10_000


def test_the_layer_menu_opens_on_the_chosen_layer_and_marks_it(study_tables, tmp_path):
    """Every projected layer is in the menu; each trait's layer chosen at extraction is selected when the trait
    is (not the lowest layer) and labelled "(chosen)"; a layer picked by hand stays while the trait does."""
    tables, prompts = study_tables
    data = build(tables, prompts, chosen={"safety/evil": 3, "safety/harm": 2})
    assert data["chosen"] == {"safety/evil": 3, "safety/harm": 2} and data["layers"]["safety/evil"] == [2, 3]
    write_viewer(tmp_path / "v.html", data)
    options = "return [...document.getElementById('layer').options].map((o) => o.textContent);"
    with browser() as b:
        b.open((tmp_path / "v.html").as_uri())
        b.select("view", "single")
        b.select("trait", "safety/evil")
        assert b.js("return document.getElementById('layer').value;") == "3"
        assert b.js(options) == ["2", "3 (chosen)"]
        b.select("trait", "safety/harm")
        assert b.js("return document.getElementById('layer').value;") == "2"
        assert b.js(options) == ["2 (chosen)", "3"]
        b.select("layer", "3")
        b.select("method", "probe")
        assert b.js("return document.getElementById('layer').value;") == "3"
        assert b.console_errors() == []


def test_ci_installs_the_browser():
    ci = (REPO / ".ci" / "run").read_text()
    assert "chromium-driver" in ci and "TRAITSCOPE_REQUIRE_BROWSER=1" in ci


def test_viewer_reference_difference_sorting_and_search(study_tables, tmp_path):
    """Scores are coloured relative to the stated reference (the comparison's base panel), a difference column shows
    variant minus base on the same tokens, rows sort by mean score and filter by a search."""
    tables, prompts = study_tables
    data = build(tables, prompts)
    write_viewer(tmp_path / "v.html", data)
    combo = "safety/evil|mean_diff|2"
    with browser() as b:
        b.open((tmp_path / "v.html").as_uri())
        b.select("trait", "safety/evil")
        b.select("layer", "2")
        b.select("method", "mean_diff")
        b.select("view", "0")  # ft vs base on the same replayed tokens; base is the reference
        base_tokens = [x for row in data["scores"]["base|replay"][combo] for x in row]
        ref = float(b.js("return document.getElementById('refnote').dataset.value;"))
        assert ref == pytest.approx(np.mean(base_tokens), abs=1e-6)
        assert "reference, base" in b.js("return document.getElementById('refnote').textContent;")
        panels = b.js(PANEL_JS)
        diff = [p for p in panels if p["panel"] == "diff"]
        assert len(diff) == len(data["prompts"]["ft|replay"])
        for d in diff:
            row = [p["id"] for p in data["prompts"]["ft|replay"]].index(d["id"])
            ft, base = data["scores"]["ft|replay"][combo][row], data["scores"]["base|replay"][combo][row]
            assert [t["score"] for t in d["tokens"]] == pytest.approx([a - c for a, c in zip(ft, base)], abs=1e-6)
        b.select("ref", "raw")
        assert float(b.js("return document.getElementById('refnote').dataset.value;")) == 0
        b.select("view", "single")
        b.select("variant", "ft")
        b.select("set", "replay")
        b.select("sort", "desc")
        shown = [p["id"] for p in b.js(PANEL_JS)]
        means = {
            p["id"]: np.mean(data["scores"]["ft|replay"][combo][k]) for k, p in enumerate(data["prompts"]["ft|replay"])
        }
        assert shown == sorted(means, key=lambda i: -means[i])
        b.js("const q = document.getElementById('q'); q.value = 'q03'; q.dispatchEvent(new Event('input'));")
        assert [p["id"] for p in b.js(PANEL_JS)] == ["q03"]
        assert "1 rows" in b.js("return document.getElementById('notes').textContent;")
        b.js("const q = document.getElementById('q'); q.value = ''; q.dispatchEvent(new Event('input'));")
        b.select("view", "0")
        b.screenshot(tmp_path / "viewer.png")
        assert b.console_errors() == []


def test_all_variants_views_are_relative_to_the_extraction_variant_not_the_alphabet():
    """'backdoored' sorts before 'base': the reference must still be base, the model the vectors come from, and the
    page must say so; where base was not captured on a set, the note says which variant stands in."""
    from types import SimpleNamespace

    from traitscope.viewer import comparisons_of

    pairs = {("backdoored", "qa"), ("base", "qa"), ("tuned", "qa"), ("backdoored", "other"), ("tuned", "other")}
    study = SimpleNamespace(
        configured=lambda: [], projected_pairs=lambda: pairs, extract=SimpleNamespace(variant="base")
    )
    views = {c.name: c for c in comparisons_of(study)}
    qa = views["all variants on qa"]
    assert [p.variant for p in qa.panels] == ["base", "backdoored", "tuned"] and qa.reference == 0
    assert qa.note == "differences from base, the variant the trait vectors were extracted from"
    other = views["all variants on other"]
    assert other.panels[other.reference].variant == "backdoored" and "base was not captured on other" in other.note


def _baseline(ids, lengths, n_random=20, seed=0):
    """Per-token random scores of a panel, as the project stage writes them (rows in ``ids`` order)."""
    from traitscope.core.artifacts import BaselineScores

    rng = np.random.default_rng(seed)
    offsets = np.r_[0, np.cumsum([lengths[i] for i in ids])]
    return BaselineScores(
        {
            "token.layer_2": torch.tensor(rng.normal(size=(int(offsets[-1]), n_random)), dtype=torch.float32),
            "response.offsets": torch.tensor(offsets),
        },
        {"ids": list(ids), "n_random": n_random, "seed": 0, "layers": [2]},
    )


def test_the_per_token_random_band_is_the_random_directions_percentiles_at_each_token(study_tables):
    from traitscope.viewer import token_bands

    ids = [f"q{i:02d}" for i in range(12)]
    lengths = {i: 3 + (k % 5) for k, i in enumerate(ids)}
    base = _baseline(ids, lengths)
    shown = ["q05", "q01", "zz"]  # any order; 'zz' has no baseline row
    bands = token_bands(base, shown, {"safety/evil": "resid", "safety/harm": "attn"}, max_tokens=4)
    assert set(bands) == {("safety/evil", 2)}  # harm is read at attn: this baseline has no attn scores
    x = base.tensors["token.layer_2"].numpy()
    offsets = base.tensors["response.offsets"].numpy()
    q05 = x[offsets[5] : offsets[6]][:4]
    assert bands[("safety/evil", 2)]["lo"][0] == pytest.approx(np.percentile(q05, 5, axis=1), abs=1e-4)
    assert bands[("safety/evil", 2)]["hi"][0] == pytest.approx(np.percentile(q05, 95, axis=1), abs=1e-4)
    assert len(bands[("safety/evil", 2)]["lo"][1]) == lengths["q01"] == 4
    assert bands[("safety/evil", 2)]["lo"][2] == [] and bands[("safety/evil", 2)]["hi"][2] == []
    # in the page data: under the panel and every method of that trait and layer
    tables, prompts = study_tables
    data = build(tables, prompts, bands={("base", "replay"): base})
    for method in ("mean_diff", "probe"):
        assert set(data["bands"]["base|replay"]) >= {f"safety/evil|{method}|2"}
    assert "ft|replay" not in data["bands"] and data["band"] == [5, 95]


def test_the_page_fades_tokens_inside_the_random_band(study_tables, tmp_path):
    tables, prompts = study_tables
    ids = [f"q{i:02d}" for i in range(12)]
    lengths = {i: 3 + (k % 5) for k, i in enumerate(ids)}
    data = build(tables, prompts, bands={("base", "replay"): _baseline(ids, lengths, seed=3)})
    write_viewer(tmp_path / "v.html", data)
    band_js = """return [...document.querySelectorAll('.toks[data-panel="base|replay"] .tok')].map((s) => ({
      score: Number(s.dataset.score), lo: s.dataset.lo === undefined ? null : Number(s.dataset.lo),
      hi: s.dataset.hi === undefined ? null : Number(s.dataset.hi), faded: s.classList.contains('inband'),
      title: s.title}));"""
    with browser() as b:
        b.open((tmp_path / "v.html").as_uri())
        b.select("view", "single")
        b.select("trait", "safety/evil")
        b.select("layer", "2")
        b.select("method", "mean_diff")
        b.select("variant", "base")
        b.select("set", "replay")
        toks = b.js(band_js)
        assert toks and all(t["lo"] is not None for t in toks)
        assert all(t["faded"] == (t["lo"] <= t["score"] <= t["hi"]) for t in toks)
        assert any(t["faded"] for t in toks) and not all(t["faded"] for t in toks)
        assert "random directions here:" in toks[0]["title"] and "(5th-95th pct)" in toks[0]["title"]
        b.select("variant", "ft")  # no band for this panel: nothing faded, nothing claimed
        assert not any(
            "random directions" in s for s in b.js("return [...document.querySelectorAll('.tok')].map((s) => s.title);")
        )
        assert b.console_errors() == []
