"""Nothing of the researcher's is lost (#35, #41): the workflow removes only what it wrote, read-only commands write
nothing, a job of a killed run is never joined by a second writer, and ``clean`` is exact.

Unit tests of :mod:`traitscope.workflow.guard` and :mod:`traitscope.workflow.clean` on folders written here; the
workflow runs of the same guarantees are in ``tests/test_recovery.py``."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from traitscope import clean as clean_cli
from traitscope.workflow import clean, guard

HOST = socket.gethostname().replace(".", "_")


def dead_pid() -> int:
    return int(
        subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True).stdout
    )


def tree(folder: Path) -> dict[str, tuple[int, int, bytes]]:
    """Every file and folder below ``folder`` with its size, modification time and content: what a read-only command
    must leave exactly as it was."""
    out = {}
    for p in sorted(folder.rglob("*")):
        st = p.lstat()
        out[str(p.relative_to(folder))] = (st.st_size, st.st_mtime_ns, p.read_bytes() if p.is_file() else b"")
    return out


HOSTILE = {
    # what a researcher may keep under a results folder: readable or not, any name
    "notes.json": b'{"a": 1, // my comment\n}',
    "empty.json": b"",
    "bom.json": b'\xef\xbb\xbf{"a": 1}',
    "lfs.parquet": b"version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 123\n",
    "projections/base/mine/scores.parquet": b"PAR1 not really",
    "vectors/x.safetensors": b"\x00" * 10,
    ".hidden.tmp": b"mine",
    ".scores.parquet.somebody.tmp": b"",
    "drafts/.plan.json.tmp": b"{",
    "weird name with spaces.json": b"{",
}


def researcher_files(results: Path) -> dict[str, bytes]:
    for name, data in HOSTILE.items():
        (results / name).parent.mkdir(parents=True, exist_ok=True)
        (results / name).write_bytes(data)
    return HOSTILE


def test_start_up_removes_only_its_own_temporaries_of_dead_writers(tmp_path):
    results = tmp_path / "results"
    researcher_files(results)
    ours = results / "projections/base/s/scores.parquet"
    ours.parent.mkdir(parents=True)
    pd.DataFrame({"a": [1]}).to_parquet(ours)
    guard.record_written(results, "project", {"variant": "base"}, [str(ours)])
    stale = ours.with_name(f".scores.parquet.{HOST}-{dead_pid()}.abc_12.tmp")  # a killed writer on this host
    stale.write_bytes(b"half")
    stale_dir = ours.with_name(f".baseline.{HOST}-{dead_pid()}.zz9.tmp")
    (stale_dir / "part").mkdir(parents=True)
    live = ours.with_name(f".tokens.parquet.{HOST}-{os.getpid()}.qq1.tmp")  # a writer that still runs
    live.write_bytes(b"")
    before = tree(results)
    start = guard.start(results, tmp_path)
    try:
        assert not stale.exists() and not stale_dir.exists() and live.exists()
        assert sorted(Path(r.split(": ")[0]).name for r in start.removed) == sorted([stale.name, stale_dir.name])
        for name, data in HOSTILE.items():  # every file of the researcher, byte for byte, untouched
            assert (results / name).read_bytes() == data, name
            assert tree(results)[name][:2] == before[name][:2], name
        assert ours.exists()  # an output of its own that reads back stays
    finally:
        start.lock.close()


def test_another_hosts_temporary_stays_while_a_job_may_write_it(tmp_path):
    results = tmp_path / "results"
    node = results / "activations" / ".shard-0.safetensors.node17-12.ab.tmp"
    node.parent.mkdir(parents=True)
    node.write_bytes(b"")
    assert guard.stale_temporaries(results) == []  # a dry run, a clean --dry-run of a held folder: left alone
    assert guard.stale_temporaries(results, any_host=True) == [node]  # start-up, once no job of a run is alive


def test_a_damaged_output_of_its_own_is_found_and_a_researchers_file_never(tmp_path):
    results = tmp_path / "results"
    researcher_files(results)
    good = results / "projections/base/s/scores.parquet"
    bad = results / "vectors/base/safety/evil/vectors.safetensors"
    good.parent.mkdir(parents=True)
    bad.parent.mkdir(parents=True)
    pd.DataFrame({"a": [1]}).to_parquet(good)
    import torch

    from traitscope.core.io import write_safetensors

    write_safetensors(bad, {"v": torch.ones(64)}, {})
    guard.record_written(results, "extract_vectors", {}, [str(bad), str(good)])
    assert guard.damaged_outputs(results) == {}
    bad.write_bytes(bad.read_bytes()[:-40])
    damaged = guard.damaged_outputs(results)
    assert list(damaged) == [bad.as_posix()] and "truncated" in damaged[bad.as_posix()]
    # nothing was removed: Snakemake removes it when the job that writes it runs again
    assert bad.exists() and all((results / n).read_bytes() == d for n, d in HOSTILE.items())
    # once noted for repair, it stays damaged even when removed (a run killed after Snakemake removed it) ...
    guard.note_repairs(results, damaged)
    bad.unlink()
    assert list(guard.damaged_outputs(results)) == [bad.as_posix()]
    # ... until its job writes it again
    time.sleep(0.01)
    write_safetensors(bad, {"v": torch.ones(64)}, {})
    guard.record_written(results, "extract_vectors", {}, [str(bad), str(good)])
    assert guard.damaged_outputs(results) == {}


def test_the_ledger_records_what_a_job_wrote_and_not_what_a_failed_one_did(tmp_path):
    results = tmp_path / "results"
    code = """
import sys
from pathlib import Path
from traitscope.workflow import guard
results, out, fail = sys.argv[1], Path(sys.argv[2]), sys.argv[3] == "1"
guard.job_started(results, "capture", {"variant": "base"}, [str(out)])
(out if out.suffix == "" else out.parent).mkdir(parents=True, exist_ok=True)
(out / "a.bin").write_bytes(b"x") if out.suffix == "" else out.write_bytes(b"y")
if fail:
    guard.job_failed()
"""
    folder_out = tmp_path / "results/finetune/ft/adapter"
    file_out = tmp_path / "results/prompts/s.parquet"
    failed_out = tmp_path / "results/prompts/t.parquet"
    for out, fail in ((folder_out, "0"), (file_out, "0"), (failed_out, "1")):
        subprocess.run([sys.executable, "-c", code, str(results), str(out), fail], check=True)
    ledger = guard.written(results)
    assert set(ledger) == {(folder_out / "a.bin").as_posix(), file_out.as_posix()}
    assert ledger[file_out.as_posix()][0] == 1
    assert not list((results / ".traitscope/running").glob("*.json"))  # each job took its marker with it


def test_a_job_of_a_killed_run_is_named_until_it_ends(tmp_path):
    results = tmp_path / "results"
    job = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from traitscope.workflow import guard; "
            "guard.job_started(sys.argv[1], 'capture', {'variant': 'base', 'pset': 'harmful_eval', 'shard': '0'}, []);"
            " print('started', flush=True); time.sleep(60)",
            str(results),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert job.stdout.readline().strip() == "started"
        with pytest.raises(guard.FolderHeld) as exc:
            guard.start(results, tmp_path)
        msg = str(exc.value)
        assert "\n" not in msg and f"capture base harmful_eval 0 (pid {job.pid} on {HOST})" in msg
        assert f"kill {job.pid}" in msg and "fix:" in msg
    finally:
        job.kill()
        job.wait()
    start = guard.start(results, tmp_path)  # the killed job's marker is stale: removed, and the run goes on
    start.lock.close()
    assert not list((results / ".traitscope/running").glob("*.json"))


def test_a_second_run_on_the_folder_is_refused_in_one_line(tmp_path):
    results = tmp_path / "results"
    held = guard.hold(results)
    code = (
        "import sys; from traitscope.workflow import guard\ntry:\n    guard.start(sys.argv[1])\nexcept guard.FolderHeld as e:\n"
        "    print(e); sys.exit(3)"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(results)], capture_output=True, text=True)
    assert proc.returncode == 3 and "is held by another run (pid" in proc.stdout, proc.stdout + proc.stderr
    held.close()
    assert subprocess.run([sys.executable, "-c", code, str(results)]).returncode == 0


@pytest.mark.parametrize(
    "argv, read_only",
    [
        (["-n", "results/all"], True),
        (["--dry-run"], True),
        (["--report", "report.zip"], True),
        (["--summary"], True),
        (["--detailed-summary"], True),
        (["--list-rules"], True),
        (["--lint"], True),
        (["--rulegraph", "dot"], True),
        (["--dag"], True),
        (["--cores", "2", "results/all"], False),
        (["--cores", "2", "--report-after-run", "--report", "r.zip"], False),
        (["--touch", "results/all"], False),
        (["--profile", "slurm", "results/all"], False),
    ],
)
def test_which_invocations_only_read(argv, read_only):
    import snakemake.cli  # noqa: F401 - what a snakemake process has loaded

    from traitscope.workflow.invocation import invocation

    got = invocation(argv)
    assert got.read_only is read_only
    assert got.cluster is ("slurm" in argv)  # the slurm profile names its executor
    assert got.targets == tuple(a for a in argv if a.startswith("results/"))


def test_stale_snakemake_locks_of_this_study_only(tmp_path):
    locks = tmp_path / ".snakemake" / "locks"
    locks.mkdir(parents=True)
    (tmp_path / "results").mkdir()
    other = tmp_path / "other_results"
    other.mkdir()
    (locks / "0.output.lock").write_text("results/all\nresults/prompts/a.parquet\n")
    (locks / "0.input.lock").write_text("resources/models/m\nresults/prompts/a.parquet\n")
    (locks / "1.output.lock").write_text("other_results/all\n")  # another study's live run in the same folder
    (locks / "1.input.lock").write_text("resources/models/m\n")
    nested = tmp_path / "results" / "ablation"
    nested.mkdir()
    (nested / guard.LOCK_NAME).write_text("")
    (locks / "2.output.lock").write_text("results/ablation/all\n")  # a study nested inside this one
    found = guard.stale_snakemake_locks(tmp_path / "results", tmp_path)
    assert [p.name for p in found] == ["0.input.lock", "0.output.lock"]


# ------------------------------------------------------------------------------------------------ clean


def a_study(tmp_path: Path) -> Path:
    results = tmp_path / "results"
    cache = results / "cache" / "capture"
    cache.mkdir(parents=True)
    (results / guard.LOCK_NAME).write_text("")
    (cache / "shard-abc.safetensors").write_bytes(b"x" * 100)  # superseded: one link
    (cache / "chunk-def.safetensors").write_bytes(b"y" * 10)
    (results / "activations").mkdir()
    (results / "activations" / f".shard-0.safetensors.{HOST}-{dead_pid()}.k1.tmp").write_bytes(b"z")
    return results


def test_clean_refuses_a_folder_the_workflow_never_wrote(tmp_path, capsys):
    folder = tmp_path / "my_data"
    researcher_files(folder)
    before = tree(folder)
    for args in ([str(folder), "--dry-run"], [str(folder)]):
        assert clean_cli.main(args) == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and "is not a traitscope results folder" in err and "fix:" in err
    assert tree(folder) == before  # nothing removed, no lock left behind


def test_clean_dry_run_lists_exactly_what_clean_removes(tmp_path):
    results = a_study(tmp_path)
    researcher_files(results)
    nested = a_study(results / "ablation")  # study B inside study A: never touched by A's clean
    nested_before = tree(nested)
    before = tree(results)
    planned = sorted(str(r.path) for r in clean.plan(results))
    assert tree(results) == before  # the dry run changed nothing
    removed = sorted(str(r.path) for r in clean.clean(results))
    assert planned == removed and len(removed) == 3
    assert all((results / n).read_bytes() == d for n, d in HOSTILE.items())
    assert tree(nested) == nested_before
    assert sorted(set(before) - set(tree(results))) == sorted(str(Path(p).relative_to(results)) for p in removed)


def test_clean_empties_the_caches_experiments_declare_and_no_other(tmp_path):
    """An experiment's folder under cache/ goes only because the experiment declares it (Experiment.caches, handed
    in by ``python -m traitscope.clean`` from the registry): clean itself names no experiment."""
    results = a_study(tmp_path)
    state = results / "cache" / "optimize" / "safety" / "evil.json"
    state.parent.mkdir(parents=True)
    state.write_text("{}")
    undeclared = results / "cache" / "my_notes" / "n.json"
    undeclared.parent.mkdir(parents=True)
    undeclared.write_text("{}")
    caches = clean_cli.experiment_caches()
    assert caches.get("optimize", "").startswith("CMA-ES state")
    assert state not in [r.path for r in clean.plan(results)]  # without the declaration it stays
    removed = {r.path: r.why for r in clean.clean(results, caches=caches)}
    assert removed[state] == caches["optimize"] and not state.exists()
    assert undeclared.exists() and undeclared not in removed


def test_a_results_folder_that_cannot_be_written_is_one_line(tmp_path):
    not_a_folder = tmp_path / "results"
    not_a_folder.write_text("a file")
    with pytest.raises(guard.FolderHeld) as exc:
        guard.hold(not_a_folder)
    assert "results_dir" in str(exc.value) and "\n" not in str(exc.value) and "fix:" in str(exc.value)


def test_json_of_the_ledger_is_strict_and_small(tmp_path):
    results = tmp_path / "results"
    out = results / "a.json"
    out.parent.mkdir(parents=True)
    out.write_text("{}")
    entry = guard.record_written(results, "r", {"w": "1"}, [str(out)])
    data = json.loads(entry.read_text())
    assert data["rule"] == "r" and data["files"] == {out.as_posix(): [2, out.stat().st_mtime_ns]}
