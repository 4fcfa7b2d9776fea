"""The per-token viewer: one self-contained HTML page of trait scores token by token.

The page is built from the per-token projection tables (``projections/<variant>/<set>/shard-*.tokens.parquet``)
and works from ``file://`` with no server, network or CDN: the data sit in the page as JSON and a small script
draws them. A reader picks the trait, method, layer, variant and prompt set and sees each prompt's assistant-turn
tokens coloured by score (the value on hover); comparison views put the same prompts side by side (variant vs
base on the same tokens, the four prefill conditions, trigger vs control).

Sizes stay bounded on large studies: at most ``viewer.max_prompts`` prompts per (variant, prompt set), a seeded
random sample drawn from the sorted ids (so sets with the same ids show the same prompts), and at most
``viewer.max_tokens`` tokens per prompt. The page states both caps and the counts it shows.
"""

from __future__ import annotations

import html
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .core.specs import ViewerSettings
from .workflow.experiment import Comparison, Panel


def sample_ids(ids: Sequence[str], n: int, seed: int) -> list[str]:
    """A seeded random sample of at most ``n`` ids, in sorted order. Drawn from the sorted unique ids, so two
    sets holding the same ids give the same sample."""
    unique = sorted(set(ids))
    if len(unique) <= n:
        return unique
    rng = np.random.default_rng(seed)
    return sorted(unique[i] for i in rng.choice(len(unique), size=n, replace=False))


def combo_key(trait: str, method: str, layer: int) -> str:
    return f"{trait}|{method}|{layer}"


def panel_data(
    tokens: pd.DataFrame, prompts: pd.DataFrame, ids: list[str], decode: Callable[[int], str], max_tokens: int
) -> tuple[list[dict[str, Any]], dict[str, list[list[float]]]]:
    """The shown prompts of one (variant, set): their text and tokens, and per (trait, method, layer) the scores
    of each prompt's tokens (rounded to 4 decimals), from its per-token table restricted to ``ids``."""
    tokens = tokens[tokens["id"].isin(ids)]
    text = dict(zip(prompts["id"], prompts["prompt"]))
    first = tokens.drop_duplicates(["trait", "method", "layer"])[["trait", "method", "layer"]]
    rows: list[dict[str, Any]] = []
    scores: dict[str, list[list[float]]] = {}
    if first.empty:
        return [{"id": i, "prompt": text.get(i, ""), "t": [], "p": [], "n": 0} for i in ids], scores
    t0, m0, l0 = first.iloc[0]
    ref = tokens[(tokens["trait"] == t0) & (tokens["method"] == m0) & (tokens["layer"] == l0)]
    by_id = {i: g.sort_values("token_index") for i, g in ref.groupby("id", sort=False)}
    for i in ids:
        g = by_id.get(i)
        n = 0 if g is None else len(g)
        shown = g.iloc[:max_tokens] if g is not None else None
        rows.append(
            {
                "id": i,
                "prompt": text.get(i, ""),
                "n": n,
                "t": [decode(int(t)) for t in shown["token_id"]] if shown is not None else [],
                "p": [int(b) for b in shown["is_prefill"]] if shown is not None else [],
            }
        )
    for (trait, method, layer), g in tokens.groupby(["trait", "method", "layer"], sort=True):
        per_id = {
            i: grp.sort_values("token_index")["score"].to_numpy()[:max_tokens] for i, grp in g.groupby("id", sort=False)
        }
        scores[combo_key(str(trait), str(method), int(layer))] = [  # type: ignore[call-overload]
            [round(float(x), 4) for x in per_id.get(i, np.zeros(0))] for i in ids
        ]
    return rows, scores


def colour_scale(scores: dict[str, dict[str, list[list[float]]]]) -> dict[str, float]:
    """Per (trait, method, layer): the 99th percentile of |score| over every shown token of every panel, so that
    all panels of one trait and layer share one colour scale."""
    pooled: dict[str, list[float]] = {}
    for per_combo in scores.values():
        for key, rows in per_combo.items():
            pooled.setdefault(key, []).extend(x for row in rows for x in row)
    return {k: round(float(np.percentile(np.abs(v), 99)), 4) if v else 1.0 for k, v in sorted(pooled.items())}


PanelKey = tuple[str, str]  # (variant, prompt set)


def build_data(
    panel_ids: dict[PanelKey, list[str]],
    read: Callable[[PanelKey, list[str]], tuple[pd.DataFrame, pd.DataFrame]],
    decoders: dict[str, Callable[[int], str]],
    comparisons: Sequence[Comparison],
    settings: ViewerSettings,
    seed: int,
    title: str = "traitscope: trait scores token by token",
) -> dict[str, Any]:
    """Everything the page shows. ``panel_ids`` holds the ids with per-token scores of each (variant, prompt
    set); ``read(panel, ids)`` returns that panel's per-token rows and prompt rows for the shown ids."""
    by_set: dict[str, set[str]] = {}
    for (_, pset), ids in panel_ids.items():
        by_set.setdefault(pset, set()).update(ids)
    samples = {pset: sample_ids(sorted(ids), settings.max_prompts, seed) for pset, ids in by_set.items()}
    prompts_of: dict[str, list[dict[str, Any]]] = {}
    scores_of: dict[str, dict[str, list[list[float]]]] = {}
    totals: dict[str, int] = {}
    combos: set[tuple[str, str, int]] = set()
    for panel in sorted(panel_ids):
        variant, pset = panel
        key = f"{variant}|{pset}"
        have = set(panel_ids[panel])
        ids = [i for i in samples[pset] if i in have]
        tokens, prompts = read(panel, ids)
        prompts_of[key], scores_of[key] = panel_data(tokens, prompts, ids, decoders[variant], settings.max_tokens)
        totals[key] = len(have)
        combos |= {
            (t, m, int(la))
            for t, m, la in tokens[["trait", "method", "layer"]].drop_duplicates().itertuples(index=False)
        }
    traits = sorted({t for t, _, _ in combos})
    present = {f"{v}|{s}" for v, s in panel_ids}
    return {
        "title": title,
        "caps": {"max_prompts": settings.max_prompts, "max_tokens": settings.max_tokens, "seed": seed},
        "totals": totals,
        "traits": traits,
        "methods": sorted({m for _, m, _ in combos}),
        "layers": {t: sorted({la for tt, _, la in combos if tt == t}) for t in traits},
        "panels": sorted(prompts_of),
        "prompts": prompts_of,
        "scores": scores_of,
        "scale": colour_scale(scores_of),
        "comparisons": [
            {
                "name": c.name,
                "note": c.note,
                "panels": [
                    {"label": p.label, "key": f"{p.variant}|{p.prompt_set}"}
                    for p in c.panels
                    if f"{p.variant}|{p.prompt_set}" in present
                ],
                "reference": sum(f"{p.variant}|{p.prompt_set}" in present for p in c.panels[: c.reference])
                if f"{c.panels[c.reference].variant}|{c.panels[c.reference].prompt_set}" in present
                else 0,
            }
            for c in comparisons
            if sum(f"{p.variant}|{p.prompt_set}" in present for p in c.panels) >= 2
        ],
    }


def read_panel(
    token_files: Sequence[str | Path], prompt_file: str | Path, ids: list[str]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The per-token rows and prompt rows of ``ids`` only (parquet filters: a large set is never read whole)."""
    wanted = [("id", "in", list(ids))] if ids else None
    parts = [pd.read_parquet(f, filters=wanted) for f in token_files] if ids else []
    tokens = (
        pd.concat(parts, ignore_index=True)
        if parts
        else pd.DataFrame(columns=["id", "token_index", "token_id", "is_prefill", "trait", "method", "layer", "score"])
    )
    prompts = (
        pd.read_parquet(prompt_file, columns=["id", "prompt"], filters=wanted)
        if ids
        else pd.DataFrame(columns=["id", "prompt"])
    )
    return tokens, prompts


def token_ids(token_files: Sequence[str | Path]) -> list[str]:
    """The ids that have per-token scores in a panel's tables (the id column only)."""
    return sorted({i for f in token_files for i in pd.read_parquet(f, columns=["id"])["id"]})


def comparisons_of(study: Any) -> list[Comparison]:
    """The side-by-side views a study supports: each configured experiment's (variant vs base on the compared set,
    the four prefill conditions, trigger vs control of each backdoor variant, ...), then every captured set that more
    than one variant was captured on."""
    out: list[Comparison] = [c for experiment, settings in study.configured() for c in experiment.comparisons(settings)]
    by_set: dict[str, list[str]] = {}
    for v, s in study.projected_pairs():
        by_set.setdefault(s, []).append(v)
    shown = {
        (c.panels[0].prompt_set, tuple(sorted(q.variant for q in c.panels)))
        for c in out
        if len({q.prompt_set for q in c.panels}) == 1
    }
    for s, variants in sorted(by_set.items()):
        if len(variants) > 1 and (s, tuple(sorted(variants))) not in shown:
            out.append(Comparison(f"all variants on {s}", tuple(Panel(v, v, s) for v in variants)))
    return out


def render(data: dict[str, Any]) -> str:
    """The self-contained page: the data as JSON inside the page, drawn by a small inline script."""
    payload = json.dumps(data, separators=(",", ":"), sort_keys=True, allow_nan=False).replace("</", "<\\/")
    return _PAGE.replace("__TITLE__", html.escape(data["title"])).replace("__DATA__", payload)


def write_viewer(path: str | Path, data: dict[str, Any]) -> int:
    """Write the page atomically; returns its size in bytes."""
    from .core.io import write_text

    text = render(data)
    write_text(path, text)
    return len(text.encode())


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>__TITLE__</title>
<style>
body{font:14px/1.45 system-ui,sans-serif;margin:0;color:#1f2328;background:#fff}
header{position:sticky;top:0;background:#f6f8fa;border-bottom:1px solid #d0d7de;padding:8px 16px;z-index:2}
h1{font-size:17px;margin:0 0 6px}
label{margin-right:12px;white-space:nowrap}select{font:inherit;margin-left:4px}
#legend{display:flex;align-items:center;gap:8px;margin-top:6px;font-size:12px}
#bar{width:220px;height:12px;border:1px solid #d0d7de;background:linear-gradient(90deg,rgb(37,99,235),#fff,rgb(220,38,38))}
#notes,#refnote{font-size:12px;color:#57606a;margin-top:4px}#refnote{color:#1f2328;font-weight:600}
.mean{font-weight:400;color:#57606a}.cell.diffcell h3{color:#8250df}
main{padding:10px 16px}
.row{display:grid;gap:12px;margin-bottom:14px;border-bottom:1px solid #eaeef2;padding-bottom:10px}
.cell h3{font-size:12px;margin:0 0 2px;color:#57606a;font-weight:600}
.prompt{font-size:12px;color:#57606a;white-space:pre-wrap;max-height:6em;overflow:auto;margin-bottom:4px}
.toks{font-family:ui-monospace,monospace;font-size:13px;line-height:1.9;white-space:pre-wrap;word-break:break-word}
.tok{border-radius:2px;padding:1px 0;cursor:default}
.tok.pre{box-shadow:inset 0 -2px 0 #6e7781}
.more{color:#8c959f;font-size:12px}
#tip{position:fixed;display:none;background:#24292f;color:#fff;font-size:12px;padding:3px 6px;border-radius:4px;
pointer-events:none;z-index:3;white-space:pre}
</style></head><body>
<header><h1>__TITLE__</h1>
<div id="controls">
<label>View<select id="view"></select></label>
<label>Trait<select id="trait"></select></label>
<label>Method<select id="method"></select></label>
<label>Layer<select id="layer"></select></label>
<label id="variant-l">Variant<select id="variant"></select></label>
<label id="set-l">Prompt set<select id="set"></select></label>
<br><label>Colour<select id="ref"><option value="centred">relative to the reference mean</option>
<option value="raw">raw score (0 = no projection)</option></select></label>
<label>Sort rows<select id="sort"><option value="id">by id</option><option value="desc">mean score, high first</option>
<option value="asc">mean score, low first</option><option value="diff">difference to the reference, high first</option>
</select></label>
<label>Search<input id="q" type="search" placeholder="prompt text, token or id"></label>
<label id="diff-l"><input id="diff" type="checkbox" checked> difference column (same tokens)</label>
</div>
<div id="legend"><span id="lo"></span><span id="bar"></span><span id="hi"></span>
<span id="unit">score = projection on the unit trait vector (units of the site's activations); red: above the
reference, blue: below it; full colour at the 99th percentile of |score - reference| over every token shown;
underlined: prefill tokens (forced, not generated); hover a token for its values</span></div>
<div id="refnote"></div>
<div id="notes"></div></header>
<main id="main"></main><div id="tip"></div>
<script id="data" type="application/json">__DATA__</script>
<script>window.__errors = []; window.addEventListener("error", (e) => window.__errors.push(String(e.message)));</script>
<script>
"use strict";
const D = JSON.parse(document.getElementById("data").textContent);
const $ = (id) => document.getElementById(id);
function fill(sel, values, labels) {
  const keep = sel.value;
  sel.innerHTML = "";
  values.forEach((v, i) => { const o = document.createElement("option"); o.value = v;
    o.textContent = labels ? labels[i] : v; sel.appendChild(o); });
  if (values.map(String).includes(keep)) sel.value = keep;
}
function colour(s, scale) {
  const t = Math.max(-1, Math.min(1, scale > 0 ? s / scale : 0));
  const a = Math.abs(t).toFixed(3);
  return t >= 0 ? `rgba(220,38,38,${a})` : `rgba(37,99,235,${a})`;
}
function combo() { return `${$("trait").value}|${$("method").value}|${$("layer").value}`; }
function scoresOf(key, i) { return (((D.scores[key] || {})[combo()] || [])[i]) || []; }
function mean(xs) { return xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : NaN; }
function quantile(xs, q) {
  if (!xs.length) return 1;
  const s = xs.slice().sort((a, b) => a - b), pos = (s.length - 1) * q, lo = Math.floor(pos), hi = Math.ceil(pos);
  return s[lo] + (s[hi] - s[lo]) * (pos - lo);
}
function viewInfo() {
  const v = $("view").value;
  if (v === "single") {
    const key = `${$("variant").value}|${$("set").value}`;
    return {panels: [{label: key.replace("|", " · "), key: key}], ref: null};
  }
  const c = D.comparisons[Number(v)];
  return {panels: c.panels, ref: c.reference || 0, note: c.note};
}
function reference(info) {
  // the mean token score of the reference panel (a comparison's base or control), or of every shown token of this
  // trait, method and layer (one variant and set)
  if ($("ref").value === "raw") return {value: 0, text: "Raw scores: 0 means no projection on the trait vector."};
  let xs = [], what;
  if (info.ref === null) {
    Object.keys(D.scores).forEach((k) => ((D.scores[k] || {})[combo()] || []).forEach((r) => { xs = xs.concat(r); }));
    what = "the mean of every shown token of this trait, method and layer, in all variants and prompt sets";
  } else {
    const key = info.panels[info.ref].key;
    ((D.scores[key] || {})[combo()] || []).forEach((r) => { xs = xs.concat(r); });
    what = `the mean token score of the reference, ${info.panels[info.ref].label}`;
  }
  const m = xs.length ? mean(xs) : 0;
  return {value: m, text: `Colours show score minus ${m.toFixed(4)}: ${what}.`};
}
function sameTokens(a, b) { return a && b && a.t.length === b.t.length && a.t.every((t, k) => t === b.t[k]); }
function tokenSpans(toks, p, sc, ref, scale, extra) {
  p.t.forEach((t, k) => {
    const s = document.createElement("span"); s.className = "tok" + (p.p[k] ? " pre" : "");
    s.textContent = t;
    if (k < sc.length) {
      s.dataset.score = sc[k]; s.style.backgroundColor = colour(sc[k] - ref, scale);
      s.title = `${JSON.stringify(t)}  score ${sc[k].toFixed(4)}  (${(sc[k] - ref >= 0 ? "+" : "")}${(sc[k] - ref).toFixed(4)} ` +
        `vs reference)  token ${k}${p.p[k] ? " (prefill)" : ""}${extra || ""}`;
    }
    toks.appendChild(s);
  });
}
function cell(key, i, label, ref, scale) {
  const div = document.createElement("div"); div.className = "cell";
  const p = (D.prompts[key] || [])[i];
  const h = document.createElement("h3");
  const sc = p ? scoresOf(key, i) : [];
  h.textContent = p ? `${label} · ${p.id} ` : `${label} · (no prompt)`;
  if (p && sc.length) { const m = document.createElement("span"); m.className = "mean";
    m.textContent = `mean ${mean(sc).toFixed(4)}`; h.appendChild(m); }
  div.appendChild(h);
  if (!p) return div;
  const pr = document.createElement("div"); pr.className = "prompt"; pr.textContent = p.prompt; div.appendChild(pr);
  const toks = document.createElement("div"); toks.className = "toks";
  toks.dataset.panel = key; toks.dataset.id = p.id;
  tokenSpans(toks, p, sc, ref, scale);
  if (p.n > p.t.length) {
    const m = document.createElement("span"); m.className = "more";
    m.textContent = ` … ${p.n - p.t.length} more tokens not shown (viewer.max_tokens = ${D.caps.max_tokens})`;
    toks.appendChild(m);
  }
  if (!p.t.length) { const m = document.createElement("span"); m.className = "more";
    m.textContent = "(no assistant-turn tokens)"; toks.appendChild(m); }
  div.appendChild(toks);
  return div;
}
function otherOf(refIdx) { return refIdx === 0 ? 1 : 0; }  // the panel compared with the reference
function tokenDiff(panels, idx, refIdx) {
  // the other panel's scores minus the reference's, token by token (a two-panel view)
  const other = otherOf(refIdx);
  const sa = scoresOf(panels[other].key, idx[other]), sb = scoresOf(panels[refIdx].key, idx[refIdx]);
  return sa.slice(0, sb.length).map((x, k) => x - sb[k]);
}
function diffCell(panels, idx, refIdx, scale) {
  // the difference as a cell, where both panels scored the same tokens
  const other = otherOf(refIdx);
  const a = D.prompts[panels[other].key][idx[other]];
  const div = document.createElement("div"); div.className = "cell diffcell";
  const h = document.createElement("h3");
  h.textContent = `difference: ${panels[other].label} − ${panels[refIdx].label} · ${a.id} `;
  const d = tokenDiff(panels, idx, refIdx);
  const m = document.createElement("span"); m.className = "mean"; m.textContent = `mean ${mean(d).toFixed(4)}`;
  h.appendChild(m); div.appendChild(h);
  const toks = document.createElement("div"); toks.className = "toks diff";
  toks.dataset.panel = "diff"; toks.dataset.id = a.id;
  tokenSpans(toks, a, d, 0, scale, "  (difference)");
  div.appendChild(toks);
  return div;
}
function rowsOf(panels) {
  const first = D.prompts[panels[0].key] || [];
  return first.map((p, i) => panels.map((pn) => {
    const list = D.prompts[pn.key] || [];
    const j = list.findIndex((q) => q.id === p.id);
    return j >= 0 ? j : i;
  }));
}
function draw() {
  const v = $("view").value;
  $("variant-l").style.display = $("set-l").style.display = v === "single" ? "" : "none";
  const info = viewInfo(), panels = info.panels;
  const ref = reference(info);
  $("refnote").textContent = ref.text; $("refnote").dataset.value = ref.value;
  let rows = rowsOf(panels);
  const refIdx = info.ref === null ? 0 : info.ref;
  const twoSame = panels.length === 2 && rows.some((idx) => sameTokens(D.prompts[panels[0].key][idx[0]],
                                                                      D.prompts[panels[1].key][idx[1]]));
  $("diff-l").style.display = twoSame ? "" : "none";
  const showDiff = twoSame && $("diff").checked;
  // search: prompt text, id or token text of any panel of the row
  const q = $("q").value.trim().toLowerCase();
  if (q) rows = rows.filter((idx) => panels.some((pn, c) => { const p = (D.prompts[pn.key] || [])[idx[c]];
    return p && (p.id.toLowerCase().includes(q) || p.prompt.toLowerCase().includes(q) || p.t.join("").toLowerCase().includes(q)); }));
  const rowMean = (idx) => mean(scoresOf(panels[0].key, idx[0]));
  const rowDiff = (idx) => panels.length < 2 ? rowMean(idx) :
    mean(scoresOf(panels[otherOf(refIdx)].key, idx[otherOf(refIdx)])) - mean(scoresOf(panels[refIdx].key, idx[refIdx]));
  const key = {desc: (i) => -rowMean(i), asc: (i) => rowMean(i), diff: (i) => -rowDiff(i)}[$("sort").value];
  if (key) rows = rows.slice().sort((a, b) => { const x = key(a), y = key(b);
    return (isNaN(x) ? Infinity : x) - (isNaN(y) ? Infinity : y); });
  // one colour scale for the view: the 99th percentile of |score - reference| over every token shown
  let dev = [], diffs = [];
  rows.forEach((idx) => panels.forEach((pn, c) => scoresOf(pn.key, idx[c]).forEach((x) => dev.push(Math.abs(x - ref.value)))));
  if (showDiff) rows.forEach((idx) => tokenDiff(panels, idx, refIdx).forEach((x) => diffs.push(Math.abs(x))));
  const scale = quantile(dev, 0.99) || 1, dscale = quantile(diffs, 0.99) || 1;
  $("lo").textContent = (-scale).toFixed(2); $("hi").textContent = "+" + scale.toFixed(2);
  const main = $("main"); main.innerHTML = "";
  const notes = [];
  panels.forEach((pn) => {
    const shown = (D.prompts[pn.key] || []).length, total = D.totals[pn.key] || 0;
    notes.push(`${pn.label}: ${shown} of ${total} prompts`);
  });
  let text = notes.join("; ") + `. Shown: a seeded random sample of at most ${D.caps.max_prompts} prompts per ` +
    `(variant, prompt set) (viewer.max_prompts, seed ${D.caps.seed}) and at most ${D.caps.max_tokens} tokens per ` +
    `prompt (viewer.max_tokens).` + (q ? ` Search "${q}": ${rows.length} rows.` : "");
  if (v !== "single") text += " Rows pair prompts by id where the sets share ids, else by position. " + (info.note || "");
  if (showDiff) text += ` Difference column: its own scale, full colour at ${dscale.toPrecision(2)}.`;
  $("notes").textContent = text;
  rows.forEach((idx) => {
    const row = document.createElement("div"); row.className = "row";
    const same = showDiff && sameTokens(D.prompts[panels[0].key][idx[0]], D.prompts[panels[1].key][idx[1]]);
    row.style.gridTemplateColumns = `repeat(${panels.length + (same ? 1 : 0)}, minmax(0, 1fr))`;
    panels.forEach((pn, c) => row.appendChild(cell(pn.key, idx[c], pn.label, ref.value, scale)));
    if (same) row.appendChild(diffCell(panels, idx, refIdx, dscale));
    main.appendChild(row);
  });
}
function onTrait() { fill($("layer"), D.layers[$("trait").value] || []); draw(); }
function onVariant() {
  const sets = D.panels.filter((k) => k.startsWith($("variant").value + "|")).map((k) => k.split("|")[1]);
  fill($("set"), sets); draw();
}
fill($("view"), ["single"].concat(D.comparisons.map((c, i) => String(i))),
     ["one variant and prompt set"].concat(D.comparisons.map((c) => c.name)));
fill($("trait"), D.traits); fill($("method"), D.methods);
fill($("variant"), [...new Set(D.panels.map((k) => k.split("|")[0]))]);
$("view").onchange = draw; $("trait").onchange = onTrait; $("method").onchange = draw; $("layer").onchange = draw;
$("variant").onchange = onVariant; $("set").onchange = draw;
$("ref").onchange = draw; $("sort").onchange = draw; $("q").oninput = draw; $("diff").onchange = draw;
// the first view: the first comparison (variant vs base, the prefill conditions, trigger vs control) when there is one
if (D.comparisons.length) $("view").value = "0";
const tip = $("tip");
document.addEventListener("mouseover", (e) => {
  const t = e.target;
  if (t.classList && t.classList.contains("tok") && t.dataset.score !== undefined) {
    tip.textContent = t.title; tip.style.display = "block";
  }
});
document.addEventListener("mousemove", (e) => { tip.style.left = (e.clientX + 12) + "px"; tip.style.top = (e.clientY + 14) + "px"; });
document.addEventListener("mouseout", (e) => { if (e.target.classList && e.target.classList.contains("tok")) tip.style.display = "none"; });
fill($("layer"), D.layers[$("trait").value] || []);
onVariant();
</script></body></html>
"""
