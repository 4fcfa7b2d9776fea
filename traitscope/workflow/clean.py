"""Free the disk a finished study no longer needs, without touching a result (the command is ``python -m
traitscope.clean``, which hands in what each registered experiment keeps in the cache).

What goes is resumable work under ``<results>/cache/`` that no output depends on: capture shards that no
activations file names any more (a superseded capture: the cache's copy is the only link left, so this is where the
space goes after config edits), chunk tensors a killed capture job left, finetune checkpoints and the adapters kept
at each checkpoint step (the adapters are written; a checkpoint variant added later trains again to its step) and
what experiments keep there (``Experiment.caches``: the CMA-ES state of optimize); plus the temporaries of its own atomic writes that a killed job left (named
``.<file>.<host>-<pid>.<random>.tmp``, removed once that process is gone). The cache's copy of a current shard is the output
file itself under a second name (a hard link), so removing it would free nothing; it stays, with the small
per-chunk response tables that let an identical capture be linked again without the model. Snakemake tracks none of these, so the next dry run plans nothing
(``tests/test_workflow.py`` checks it). What stays: every declared output (activation shards, tables, vectors,
figures, adapters), the judge's answers unless ``--judge``, and anything the workflow did not write (whatever its
name or content), including another study's results folder nested inside this one. A folder no run of the workflow
wrote is refused in one line (exit 2). The command holds the results folder's lock, so it never runs beside a
workflow run, and refuses while a job of a killed run still writes there; ``--dry-run`` takes no lock, changes
nothing, and lists exactly what the real command then removes. A later config edit recomputes what it needs (a
killed job then resumes from its start).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple


class Removal(NamedTuple):
    path: Path
    size: int
    why: str


def plan(
    results_dir: str | Path,
    judge: bool = False,
    any_host: bool | None = None,
    caches: Mapping[str, str] | None = None,
) -> list[Removal]:
    """What :func:`clean` removes under ``results_dir``, with sizes and reasons (nothing is removed): resumable work
    in its cache that no output needs (``caches``: the experiments' folders under ``cache/`` and why each may go,
    from their :attr:`~traitscope.workflow.experiment.Experiment.caches`), and the temporaries of its own atomic writes whose writer is gone (those of
    another host only when no job of an earlier run is alive: ``any_host``, found out when None). Raises
    :class:`~traitscope.workflow.guard.NotAStudy` for a folder the workflow did not create."""
    from .guard import NotAStudy, is_study_folder, live_jobs, stale_temporaries

    if not is_study_folder(results_dir):
        raise NotAStudy(
            f"'{results_dir}' is not a traitscope results folder (no {guard_marker()} in it: no run of the workflow "
            "wrote there) (fix: pass the results_dir of a study that has run)"
        )
    cache = Path(results_dir) / "cache"
    out: list[Removal] = []

    def add(path: Path, why: str) -> None:
        if path.is_file() and not path.is_symlink():
            out.append(Removal(path, path.stat().st_size, why))

    capture = cache / "capture"
    for shard in sorted(capture.glob("shard-*.safetensors")):
        if shard.stat().st_nlink == 1:  # no activations output is this file any more
            add(shard, "capture shard no output names (superseded)")
            add(shard.with_suffix(".sha256"), "checksum of a superseded capture shard")
    for chunk in sorted(capture.glob("chunk-*.safetensors")):  # their small response tables stay: reuse reads them
        add(chunk, "capture chunk tensors a killed job left")
    for ckpt in sorted((cache / "finetune").glob("*.safetensors")):
        kept = ".step-" in ckpt.name  # finetune.snapshot_file
        add(
            ckpt,
            "finetune checkpoint "
            + ("adapter kept (a new checkpoint variant trains again)" if kept else "(the adapter is written)"),
        )
    for kind, why in sorted((caches or {}).items()):
        for state in sorted((cache / kind).rglob("*")):
            if not state.name.startswith("."):  # a temporary: below, once its writer is gone
                add(state, why)
    if judge:
        for answer in sorted((cache / "judge").rglob("*.json")):
            add(answer, "a cached judge answer (--judge)")
    if any_host is None:
        any_host = not live_jobs(results_dir)
    for tmp in stale_temporaries(results_dir, any_host=any_host):
        size = sum(f.stat().st_size for f in tmp.rglob("*") if f.is_file()) if tmp.is_dir() else tmp.stat().st_size
        out.append(Removal(tmp, size, "a temporary a killed job left"))
    return out


def guard_marker() -> str:
    from .guard import LOCK_NAME, STATE

    return f"{LOCK_NAME} or {STATE}/"


def clean(results_dir: str | Path, judge: bool = False, caches: Mapping[str, str] | None = None) -> list[Removal]:
    """Remove what :func:`plan` lists, holding the folder's lock (so no run writes there meanwhile) after making sure
    no job of an earlier run still writes there."""
    from .guard import hold, is_study_folder, refuse_live_jobs, remove

    if not is_study_folder(results_dir):
        plan(results_dir, judge, caches=caches)  # raises NotAStudy
    lock = hold(results_dir)
    try:
        refuse_live_jobs(results_dir)
        removed = plan(results_dir, judge, any_host=True, caches=caches)
        for r in removed:
            if r.path.is_dir():
                remove([r.path], r.why)
            else:
                r.path.unlink(missing_ok=True)
        return removed
    finally:
        lock.close()


def summary(items: list[Removal]) -> str:
    by_why: dict[str, list[Removal]] = {}
    for r in items:
        by_why.setdefault(r.why, []).append(r)
    lines = [f"  {len(rs):5d} x {why}: {sum(r.size for r in rs) / 1e6:.1f} MB" for why, rs in sorted(by_why.items())]
    return "\n".join(lines + [f"  total: {sum(r.size for r in items) / 1e6:.1f} MB in {len(items)} files"])
