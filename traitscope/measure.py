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

from .experiments import REGISTRY
from .findings import findings
from .results import Results, open_results
from .workflow.tables import fmt, table, yes

DOC = Path(__file__).resolve().parents[1] / "docs" / "measurements.md"
HEADER_MARK = "<!-- measured -->"


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

    from .study import load_config
    from .workflow.budget import total_bytes

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
    out += [
        "## Trait vectors",
        "",
        "Held-out test ROC-AUC at each trait's chosen layer (chosen by cross-validation inside the training split) "
        "against the 95th percentile of random unit directions at that layer, on the same rows.",
        "",
    ]
    rows = []
    for t in res.traits():
        info = res.vector_info(t)
        b = info.info["best"]
        rows.append(
            [t, info.site, b["layer"], b["method"], fmt(b["auc"]), fmt(b["random_auc_p95"]), yes(b["beats_random"])]
        )
    out += table(["trait", "site", "layer", "method", "test AUC", "random p95", "beats"], rows)
    for experiment in REGISTRY:
        out += experiment.measurements(res)
    if announced:
        held = disk_bytes(res.root)
        out += [
            "## Disk",
            "",
            f"Start-up announced {announced / 1e6:.0f} MB (the activation budget); `results/` holds "
            f"{held / announced:.2f} times that, each hard-linked shard counted once (finetune adapters and "
            "checkpoints, logs and tables included).",
            "",
        ]
    return "\n".join(out).rstrip() + "\n"


def header(res: Results) -> str:
    """Where the figures come from: the run's commit, finish time and platform (from its manifest), and this machine's
    cores."""
    m = res.manifest
    commit = str(m.get("git_commit") or "unknown")[:7]
    return (
        f"# Measurements of the embedded default\n\n"
        f"Measured from a run of commit {commit} that finished {m.get('created', 'at an unknown time')} on "
        f"{m.get('platform', platform.platform())} with {os.cpu_count()} CPU cores (`snakemake --cores 2 "
        "results/all` on `config/config.yaml`), written by `python -m traitscope.measure <results>`. "
        "SmolLM2-135M-Instruct is a 135M-parameter demonstration model: these numbers show the pipeline and its "
        "controls working, not findings about large models. `tests/test_embedded.py` re-runs the study and fails "
        "when this file no longer holds what it gives.\n\n" + HEADER_MARK + "\n\n"
    )


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
