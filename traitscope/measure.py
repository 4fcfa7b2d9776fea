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
from typing import NamedTuple

import pandas as pd

from .experiments import REGISTRY
from .findings import findings
from .results import Results, open_results
from .workflow.tables import fmt, table, yes

DOC = Path(__file__).resolve().parents[1] / "docs" / "measurements.md"
README = DOC.parents[1] / "README.md"
HEADER_MARK = "<!-- measured -->"
PROFILE_MARK = "<!-- profile: timings vary from run to run, so tests/test_embedded.py does not compare them -->"
RUN_TIME = re.compile(r"(<!-- run time -->).*?(<!-- /run time -->)", re.S)
"""Where the README states the run time (its first sentence): ``measure`` writes it, nobody else."""


class RunTime(NamedTuple):
    """The wall time of one ``snakemake`` invocation, from Snakemake's own log of it."""

    seconds: float
    jobs: int
    log: Path


def run_time(workdir: str | Path) -> RunTime | None:
    """The newest complete run in ``workdir`` (``.snakemake/log``): its ``Elapsed time`` and the jobs it ran; None
    when no run there finished."""
    logs = sorted(Path(workdir, ".snakemake", "log").glob("*.snakemake.log"), reverse=True)
    for log in logs:
        text = log.read_text(encoding="utf-8", errors="replace")
        done = re.search(r"^(\d+) of \1 steps \(100%\) done$", text, re.M)
        elapsed = re.search(r"^Elapsed time: (\d+):(\d+):(\d+(?:\.\d+)?)$", text, re.M)
        if done and elapsed:
            h, m, sec = elapsed.groups()
            return RunTime(int(h) * 3600 + int(m) * 60 + float(sec), int(done.group(1)), log)
    return None


def minutes(seconds: float) -> str:
    """``1336.2`` -> ``22 min 16 s``."""
    m, s = divmod(int(round(seconds)), 60)
    return f"{m} min {s:02d} s" if m else f"{s} s"


def job_profile(*roots: str | Path) -> pd.DataFrame:
    """One row per job from Snakemake's ``benchmark:`` files under ``<root>/benchmarks/`` (rule = the first folder):
    rule, job, wall seconds, max RSS (MB), CPU seconds, MB read and written."""
    rows = []
    for root in roots:
        base = Path(root) / "benchmarks"
        for tsv in sorted(base.rglob("*.tsv")):
            frame = pd.read_csv(tsv, sep="\t")
            if frame.empty:
                continue
            last = frame.iloc[-1]  # a job run with --benchmark-repeats has one row per repeat
            rel = tsv.relative_to(base)
            rows.append(
                {
                    "rule": rel.parts[0] if len(rel.parts) > 1 else rel.stem,
                    "job": str(rel.with_suffix("")),
                    "seconds": float(last["s"]),
                    "max_rss_mb": float(pd.to_numeric(last["max_rss"], errors="coerce")),
                    "cpu_seconds": float(pd.to_numeric(last["cpu_time"], errors="coerce")),
                    "io_in_mb": float(pd.to_numeric(last["io_in"], errors="coerce")),
                    "io_out_mb": float(pd.to_numeric(last["io_out"], errors="coerce")),
                }
            )
    return pd.DataFrame(rows, columns=["rule", "job", "seconds", "max_rss_mb", "cpu_seconds", "io_in_mb", "io_out_mb"])


def profile(res: Results) -> list[str]:
    """The per-rule table of a run (jobs, total and longest wall seconds, peak RSS, share of all job seconds) and its
    wall time, as Markdown lines."""
    jobs = job_profile(res.root, res.workdir / "resources")
    if jobs.empty:
        return []
    run = run_time(res.workdir)
    by = (
        jobs.groupby("rule")
        .agg(jobs=("job", "size"), total=("seconds", "sum"), longest=("seconds", "max"), rss=("max_rss_mb", "max"))
        .sort_values("total", ascending=False)
    )
    total = float(by["total"].sum())
    rows = [
        [rule, int(r.jobs), f"{r.total:.0f}", f"{r.longest:.0f}", f"{r.rss:.0f}", f"{r.total / total:.1%}"]
        for rule, r in by.iterrows()
    ]
    out = ["## Where the time goes", ""]
    if run is not None:
        out += [
            f"The run took {minutes(run.seconds)} of wall time for {run.jobs} jobs (Snakemake's `Elapsed time`, "
            f"from `{run.log.name}`); its jobs together took {total:.0f} s (the sum of their wall times: up to "
            "two run at once on two cores).",
            "",
        ]
    out += [
        "Per rule, from each job's Snakemake `benchmark:` file (`results/benchmarks/<rule>/...tsv`; wall seconds, "
        "peak resident memory of the job's processes, sampled by Snakemake each second).",
        "",
    ]
    out += table(["rule", "jobs", "total s", "longest s", "peak RSS MB", "share of job time"], rows)
    return out


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
    """Where the figures come from: the run's commit, finish time, wall time and platform (from its manifest and
    Snakemake's log), and this machine's cores."""
    m = res.manifest
    commit = str(m.get("git_commit") or "unknown")[:7]
    run = run_time(res.workdir)
    took = f", took {minutes(run.seconds)} for {run.jobs} jobs" if run else ""
    return (
        f"# Measurements of the embedded default\n\n"
        f"Measured from a run of commit {commit} that finished {m.get('created', 'at an unknown time')}{took} on "
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
    """The checked part of ``path``: after the header, before the run's profile."""
    text = path.read_text(encoding="utf-8")
    text = text.split(HEADER_MARK, 1)[1].lstrip("\n") if HEADER_MARK in text else text
    return text.split(PROFILE_MARK, 1)[0].rstrip("\n") + "\n"


def readme_with_run_time(readme: str, res: Results) -> str:
    """``readme`` with its stated run time (between the run-time marks) replaced by this run's, its commit and how
    it was measured."""
    run = run_time(res.workdir)
    if run is None:
        return readme
    commit = str(res.manifest.get("git_commit") or "unknown")[:7]
    stated = (
        f"{minutes(run.seconds)} on 2 cores at commit {commit} (`snakemake --cores 2 results/all` from an empty "
        "results folder, the model's conversion included; Snakemake's `Elapsed time`, written by "
        "`python -m traitscope.measure`)"
    )
    return RUN_TIME.sub(lambda m: m.group(1) + stated + m.group(2), readme)


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
    timings = profile(res)
    tail = ("\n" + PROFILE_MARK + "\n\n" + "\n".join(timings).rstrip() + "\n") if timings else ""
    DOC.write_text(header(res) + measured + tail, encoding="utf-8")
    print(f"wrote {DOC}")
    if README.exists():
        text = README.read_text(encoding="utf-8")
        updated = readme_with_run_time(text, res)
        if updated != text:
            README.write_text(updated, encoding="utf-8")
            print(f"wrote the run time into {README}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
