"""The embedded default's measured results in one place: ``docs/measurements.md``, written from a finished run.

    snakemake --cores 2 results/all                    # the embedded default (config/config.yaml)
    python -m traitscope.measure results               # write docs/measurements.md from it
    python -m traitscope.measure results --check       # exit 1 when the file does not hold what these results give

Every number is read from the run's own JSON and tables (nothing is recomputed); the file records the commit, date
and machine it was measured on. ``tests/test_embedded.py`` runs the study and checks that the file still holds what
it gives (the same text, every number within rounding), so a documented figure that the pipeline no longer produces
fails CI.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import sys
from pathlib import Path
from typing import Any

from .findings import findings
from .results import Results, open_results

DOC = Path(__file__).resolve().parents[1] / "docs" / "measurements.md"
HEADER_MARK = "<!-- measured -->"


def _f(x: Any) -> str:
    return "n/a" if x is None or x != x else f"{float(x):.2f}"


def _ci(lo: Any, hi: Any) -> str:
    return f"[{_f(lo)}, {_f(hi)}]"


def _yes(b: Any) -> str:
    return "yes" if b else "**no**"


def _table(head: list[str], rows: list[list[Any]]) -> list[str]:
    return (["| " + " | ".join(head) + " |", "| " + " | ".join("---" for _ in head) + " |"]
            + ["| " + " | ".join(str(c) for c in r) + " |" for r in rows] + [""])


def disk_bytes(folder: str | Path) -> int:
    """Bytes of the files below ``folder``, each inode once (as ``du -sb`` counts hard-linked shards)."""
    seen, total = set(), 0
    for path in Path(folder).rglob("*"):
        if path.is_file() and not path.is_symlink():
            st = path.stat()
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_size
    return total


def announced_bytes(res: Results) -> float:
    """What start-up announces for the study that wrote ``res`` (its config from the manifest)."""
    import copy

    from .workflow.budget import total_bytes
    from .workflow.config import load_config

    cfg = copy.deepcopy(res.config)  # the manifest holds the resolved config: a finetuned variant names its adapter
    for variant in cfg.get("variants", {}).values():
        if variant.get("finetune"):
            variant.pop("adapter", None)
    return total_bytes(load_config(cfg, base_dir=res.workdir, resources_dir=res.workdir / "resources"))


def body(res: Results, announced: float | None = None) -> str:
    """The measured figures of a results folder as Markdown (no header); with ``announced`` (the bytes start-up
    announced), the disk the study holds against it."""
    out: list[str] = ["## Findings (each beside its control)", ""]
    out += [f"- **{name}**: {line}" for name, line, _ in findings(res)] + [""]
    out += ["## Trait vectors", "",
            "Held-out test ROC-AUC at each trait's chosen layer (chosen by cross-validation inside the training split) "
            "against the 95th percentile of random unit directions at that layer, on the same rows.", ""]
    rows = []
    for t in res.traits():
        info = res.vector_info(t)
        b = info.info["best"]
        rows.append([t, info.site, b["layer"], b["method"], _f(b["auc"]), _f(b["random_auc_p95"]),
                     _yes(b["beats_random"])])
    out += _table(["trait", "site", "layer", "method", "test AUC", "random p95", "beats"], rows)
    ex = res.experiments()
    if "harm_check" in ex:
        h = res.experiment("harm_check")
        out += ["## Harm check", "",
                f"{h['trait']}, layer {h['best_layer']}: extraction test AUC {_f(h['extraction_test_auc'])} (random p95 "
                f"{_f(h['extraction_baseline']['random_auc_p95'])}); independent eval sets AUC {_f(h['eval_auc'])} "
                f"{_ci(*h['eval_auc_ci95'])} (random p95 {_f(h['eval_baseline']['random_auc_p95'])}), Cohen's d "
                f"{_f(h['eval_cohens_d'])}.", ""]
    if "variant_comparison" in ex:
        c = res.experiment("variant_comparison")
        out += [f"## Emergent misalignment: {c['variant']} vs {c['base']}", "",
                f"On `{c['prompt_set']}` (the base's answers replayed), per question; p corrected by "
                f"{c['correction']['method']} across traits.", ""]
        rows = [[t, r["layer"], r["n"], f"{_f(r['cohens_dz'])} {_ci(r['dz_ci_low'], r['dz_ci_high'])}",
                 _f(r["p_adjusted"]), _f(r.get("random_abs_dz_p95")), _yes(r.get("beats_random"))]
                for t, r in sorted(c["traits"].items())]
        out += _table(["trait", "layer", "questions", "d_z [95% CI]", "p adjusted", "random \\|d_z\\| p95", "beats"],
                      rows)
    for name in sorted(n for n in ex if n.startswith("external/")):
        e = res.experiment(name)
        out += [f"## External dataset: {e['dataset']}", "", f"{e['n_unsafe']} unsafe vs {e['n_safe']} safe rows.", ""]
        rows = [[t, r["layer"], r["position"], f"{_f(r['overall']['auc'])} {_ci(r['overall']['ci_low'], r['overall']['ci_high'])}",
                 _f(r["overall"]["random_auc_p95"]), _yes(r["overall"]["beats_random"])]
                for t, r in sorted(e["traits"].items())]
        out += _table(["trait", "layer", "position", "AUC [95% CI]", "random p95", "beats"], rows)
    if "prefill_attack" in ex:
        p = res.experiment("prefill_attack")
        c24, c12 = p["comparisons"]["C2_vs_C4"]["traits"], p["comparisons"]["C1_vs_C2"]["traits"]
        out += ["## Prefill attack", "", "C2 (harmful + prefill) vs C4 (benign + prefill), and the prefill's shift on "
                "harmful prompts (C2 - C1, paired).", ""]
        rows = [[t, r["layer"], _f(r["auc"]), _f(r.get("random_auc_p95")), _yes(r.get("beats_random")),
                 _f(c12[t]["cohens_dz"])] for t, r in sorted(c24.items())]
        out += _table(["trait", "layer", "C2 vs C4 AUC", "random p95", "beats", "C2 - C1 d_z"], rows)
    for name in sorted(n for n in ex if n.startswith("backdoor/")):
        b = res.experiment(name)
        variant = name.split("/", 1)[1]
        out += [f"## Backdoor: {variant}", "", "Trigger vs control at the last prompt token, before any output.", ""]
        rows = []
        for t, r in sorted(b["traits"].items()):
            cells = r["positions"].get("last", {})
            bd, base = cells.get(variant, {}), cells.get(b.get("baseline") or "", {})
            rows.append([t, r["layer"], f"{_f(bd.get('auc'))} {_ci(bd.get('ci_low'), bd.get('ci_high'))}",
                         _f(bd.get("random_auc_p95")), _yes(bd.get("beats_random")), _f(base.get("auc"))])
        out += _table(["trait", "layer", f"{variant} AUC [95% CI]", "random p95", "beats", "base model AUC"], rows)
    for name in sorted(n for n in ex if n.startswith("organism/")):
        o = res.experiment(name)
        ch = o["chosen"]
        out += [f"## Model organism: {o['finetuned']}", "",
                f"The {ch['method']} direction at layer {ch['layer']}: held-out AUC {_f(ch['heldout_auc'])} "
                f"{_ci(*ch['heldout_auc_ci95'])}, random p95 {_f(ch['random_auc_p95'])}, Cohen's d "
                f"{_f(ch['heldout_cohens_d'])}.", ""]
        abl = f"organism_ablation/{o['finetuned']}"
        if abl in ex:
            a = res.experiment(abl)
            judged = a["judge"]["by_condition"]
            out += ["Judged share misaligned (offline judge): " + ", ".join(
                f"{k} {_f(v['share_misaligned'])}" for k, v in judged.items())
                + f"; restoration rate {_f(a['judge']['restoration_rate'])}.", ""]
    for name in sorted(n for n in ex if n.startswith("sae/")):
        s = res.experiment(name)
        out += [f"## SAE features: {s['experiment']}", ""]
        rows = [[r["layer"], r["summary"]["best_feature"], _f(r["summary"]["best_feature_auc"]),
                 r["summary"]["best_trait"], _f(r["summary"]["best_trait_auc"]), _f(r["summary"]["random_auc_p95"]),
                 _yes(r["summary"]["best_feature_beats_random"]), _yes(r["summary"]["best_trait_beats_random"])]
                for r in s["layers"]]
        out += _table(["layer", "best feature", "its AUC", "best trait", "its AUC", "random p95", "feature beats",
                       "trait beats"], rows)
    if announced:
        held = disk_bytes(res.root)
        out += ["## Disk", "", f"Start-up announced {announced / 1e6:.0f} MB (the activation budget); `results/` holds "
                f"{held / announced:.2f} times that, each hard-linked shard counted once (finetune adapters and "
                "checkpoints, logs and tables included).", ""]
    return "\n".join(out).rstrip() + "\n"


def header(res: Results) -> str:
    """Where the figures come from: the run's commit, finish time and platform (from its manifest), and this machine's
    cores."""
    m = res.manifest
    commit = str(m.get("git_commit") or "unknown")[:7]
    return (f"# Measurements of the embedded default\n\n"
            f"Measured from a run of commit {commit} that finished {m.get('created', 'at an unknown time')} on "
            f"{m.get('platform', platform.platform())} with {os.cpu_count()} CPU cores (`snakemake --cores 2 "
            "results/all` on `config/config.yaml`), written by `python -m traitscope.measure <results>`. "
            "SmolLM2-135M-Instruct is a 135M-parameter demonstration model: these numbers show the pipeline and its "
            "controls working, not findings about large models. `tests/test_embedded.py` re-runs the study and fails "
            "when this file no longer holds what it gives.\n\n" + HEADER_MARK + "\n\n")


NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def same_figures(documented: str, measured: str, tolerance: float = 0.011) -> list[str]:
    """The lines where ``documented`` and ``measured`` differ: other text, or a number off by more than
    ``tolerance`` (decimals) or at all (integers). Empty when the document holds what was measured."""
    a, b = documented.splitlines(), measured.splitlines()
    problems = [f"{len(a)} lines documented, {len(b)} measured"] if len(a) != len(b) else []
    for x, y in zip(a, b):
        if NUMBER.sub("#", x) != NUMBER.sub("#", y):
            problems.append(f"documented: {x!r} / measured: {y!r}")
            continue
        for u, v in zip(NUMBER.findall(x), NUMBER.findall(y)):
            if ("." in u or "." in v) and abs(float(u) - float(v)) <= tolerance or u == v:
                continue
            problems.append(f"documented {u}, measured {v}: {y!r}")
    return problems


def documented_body(path: Path = DOC) -> str:
    text = path.read_text(encoding="utf-8")
    return text.split(HEADER_MARK, 1)[1].lstrip("\n") if HEADER_MARK in text else text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", nargs="?", default="results")
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args(argv)
    res = open_results(args.results)
    measured = body(res, announced_bytes(res))
    if args.check:
        problems = same_figures(documented_body(), measured)
        for p in problems:
            print(p, file=sys.stderr)
        return 1 if problems else 0
    DOC.parent.mkdir(exist_ok=True)
    DOC.write_text(header(res) + measured, encoding="utf-8")
    print(f"wrote {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
