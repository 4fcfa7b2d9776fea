"""What the workflow wrote, who is writing, and a clean restart after a crash, without touching anything else.

A results folder holds the workflow's own records in ``<results_dir>/.traitscope/`` beside its lock,
``<results_dir>/.traitscope.lock``:

* ``written/<digest>.json``: one **ledger** entry per finished job: its rule, wildcards and every file it wrote, with
  size and modification time (:func:`job_started` writes it when the job ends without an error). This is how the
  workflow knows what it wrote: a file is the workflow's own when a ledger entry names it, never because of its name
  or whether it parses. Whatever else lies under the results folder, readable or not, is never removed or changed.
* ``running/<host>-<pid>.json``: one **marker** per running job, held under an exclusive ``flock`` by the job for its
  whole life (the kernel releases it however the job ends). A job left running by a killed ``snakemake`` (an orphan)
  still holds its marker, so a new run refuses to start a second writer of the same files.
* ``repair.json``: outputs found damaged at start-up and not yet rewritten: they stay planned until a job rewrites
  them, even when a run is killed after Snakemake removed them.

At start-up the Snakefile's main process (``rules/common.smk``) calls :func:`start`:

* An invocation that runs jobs (not a dry run, report, summary, list or lint: :mod:`traitscope.workflow.invocation`)
  holds the folder's lock for its life (:func:`hold`; a second run on the same folder stops in one line), refuses
  while a job of an earlier run still writes (:func:`live_jobs`), removes the temporaries of its own atomic writes
  whose writer is gone (:func:`stale_temporaries`) and Snakemake's own locks left by a killed run of this study
  (:func:`stale_snakemake_locks`); Snakemake then reruns the outputs a killed job left incomplete.
* A read-only invocation creates, changes and deletes nothing under the results folder and works while another run
  holds it.
* Outputs the ledger names that no longer read back (truncated, garbled, emptied: :func:`damaged_outputs`) are
  planned again with everything downstream, in dry runs too: Snakemake's ``--forcerun`` of those files, where a rule
  of the current study still makes them (:mod:`traitscope.workflow.snakemake_hooks`); Snakemake removes each before
  its job writes it again, and :func:`note_repairs` keeps them planned until then.

Nested studies (a study whose results folder lies inside another's) are separate: nothing here descends into a
folder that holds a results folder's records of its own.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any, NamedTuple

from ..core.errors import TraitscopeError
from ..core.io import content_hash, file_problem, temporary_writer

log = logging.getLogger(__name__)
LOCK_NAME = ".traitscope.lock"
STATE = ".traitscope"
HOST = socket.gethostname().replace(".", "_")


class FolderHeld(TraitscopeError):
    """Another run holds the results folder, or a job of an earlier run still writes in it."""


class NotAStudy(TraitscopeError):
    """A folder the workflow did not create."""


def state(results_dir: str | os.PathLike[str], *parts: str) -> Path:
    return Path(results_dir, STATE, *parts)


def is_study_folder(folder: str | os.PathLike[str]) -> bool:
    """Whether the workflow created ``folder`` as a results folder (its lock or records are there)."""
    return (Path(folder) / LOCK_NAME).is_file() or (Path(folder) / STATE).is_dir()


# ----------------------------------------------------------------------------------------------- the lock


def hold(results_dir: str | os.PathLike[str]) -> IO[str]:
    """Lock ``results_dir`` for this process; keep the returned handle open as long as the run lasts."""
    import fcntl

    folder = Path(results_dir)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        state(folder).mkdir(exist_ok=True)
        handle = open(folder / LOCK_NAME, "a+")  # noqa: SIM115 - held open for the life of the process
    except OSError as exc:
        raise FolderHeld(
            f"results_dir: cannot write in '{folder}' ({exc.strerror or exc}) (fix: point results_dir to a writable "
            "folder of its own, or make this one writable)"
        ) from None
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise FolderHeld(
            f"results folder '{folder}' is held by another run ({holder}) (fix: wait for that run to "
            "finish, or stop it; a run that was killed releases it by itself)"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()} on {HOST}, started {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
    handle.flush()
    return handle


# ------------------------------------------------------------------------------------------- running jobs


class Job(NamedTuple):
    """A job's marker: who runs it, where, and what it writes."""

    path: Path
    host: str
    pid: int
    rule: str
    wildcards: dict[str, str]
    slurm_job_id: str | None

    def describe(self) -> str:
        what = " ".join([self.rule, *self.wildcards.values()])
        where = f"pid {self.pid} on {self.host}" + (f", SLURM job {self.slurm_job_id}" if self.slurm_job_id else "")
        return f"{what} ({where})"


_JOB: dict[str, Any] = {}


def job_started(
    results_dir: str | os.PathLike[str], rule: str, wildcards: dict[str, str], outputs: Iterable[str]
) -> None:
    """Mark this process as the job ``rule``/``wildcards`` of ``results_dir`` until it ends, and, when it ends without
    an error (:func:`job_failed` not called), record in the ledger what it wrote (``outputs``: files or folders)."""
    import fcntl

    folder = state(results_dir, "running")
    folder.mkdir(parents=True, exist_ok=True)
    marker = folder / f"{HOST}-{os.getpid()}.json"
    handle = open(marker, "a+")  # noqa: SIM115 - held for the life of the job
    fcntl.flock(handle, fcntl.LOCK_EX)  # before the content: a checker that can lock it finds no live writer
    handle.seek(0)
    handle.truncate()
    record = {
        "host": HOST,
        "pid": os.getpid(),
        "rule": rule,
        "wildcards": {k: str(v) for k, v in wildcards.items()},
        "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
        "started": time.time(),
    }
    handle.write(json.dumps(record))
    handle.flush()
    _JOB.update(handle=handle, marker=marker, results=str(results_dir), record=record, outputs=list(outputs))
    atexit.register(_job_ended)


def job_failed() -> None:
    """This job ends with an error: its outputs are not recorded as written (Snakemake removes them)."""
    _JOB["failed"] = True


def _job_ended() -> None:
    if not _JOB:
        return
    try:
        if not _JOB.get("failed"):
            record_written(_JOB["results"], _JOB["record"]["rule"], _JOB["record"]["wildcards"], _JOB["outputs"])
    finally:
        _JOB["marker"].unlink(missing_ok=True)
        _JOB["handle"].close()
        _JOB.clear()


def _files_of(path: Path) -> Iterator[Path]:
    if path.is_dir():
        yield from (p for p in sorted(path.rglob("*")) if p.is_file())
    elif path.is_file():
        yield path


def record_written(
    results_dir: str | os.PathLike[str], rule: str, wildcards: dict[str, str], outputs: Iterable[str]
) -> Path:
    """Add a ledger entry: the files under ``outputs`` (files or folders) as they are now, written by ``rule``."""
    from ..core.io import write_json

    files: dict[str, list[int]] = {}
    for out in outputs:
        for f in _files_of(Path(out)):
            st = f.stat()
            files[f.as_posix()] = [st.st_size, st.st_mtime_ns]
    key = content_hash(rule, sorted(str(o) for o in outputs), length=24)
    path = state(results_dir, "written", f"{key}.json")
    write_json(path, {"rule": rule, "wildcards": wildcards, "files": files, "finished": time.time()})
    return path


def written(results_dir: str | os.PathLike[str]) -> dict[str, tuple[int, int, float]]:
    """Every file the ledger of ``results_dir`` names: path -> (size, mtime in ns, when it was recorded); the newest
    entry of a path wins."""
    out: dict[str, tuple[int, int, float]] = {}
    folder = state(results_dir, "written")
    if not folder.is_dir():
        return out
    for entry in folder.glob("*.json"):
        try:
            data = json.loads(entry.read_text(encoding="utf-8"))
            files, finished = data["files"], float(data["finished"])
        except (OSError, ValueError, KeyError, TypeError):
            continue  # an entry cut by a crash names nothing: its job's outputs are Snakemake's incomplete ones
        for path, (size, mtime) in files.items():
            if path not in out or out[path][2] <= finished:
                out[path] = (int(size), int(mtime), finished)
    return out


def _flock_free(path: Path) -> bool:
    """Whether nobody holds ``path``'s lock (its writer is gone)."""
    import fcntl

    try:
        with open(path, "a+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.flock(handle, fcntl.LOCK_UN)
        return True
    except BlockingIOError:
        return False
    except OSError:
        return True  # the file went away: its job ended


def _slurm_alive(job_id: str) -> bool | None:
    """Whether SLURM still runs or queues ``job_id`` (None when squeue cannot say)."""
    if not shutil.which("squeue"):
        return None
    try:
        proc = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%T"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    if proc.returncode != 0:
        return False if "Invalid job id" in proc.stderr else None
    return bool(proc.stdout.strip())


def live_jobs(results_dir: str | os.PathLike[str], remove_stale: bool = False) -> list[Job]:
    """The jobs still running in ``results_dir`` (markers whose job holds them; on another host, SLURM's word where
    squeue answers). With ``remove_stale``, the markers of jobs that are gone are removed."""
    folder = state(results_dir, "running")
    alive: list[Job] = []
    for marker in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            data = json.loads(marker.read_text(encoding="utf-8") or "{}")
        except (OSError, ValueError):
            data = {}
        job = Job(
            marker,
            str(data.get("host", "?")),
            int(data.get("pid", 0) or 0),
            str(data.get("rule", "?")),
            dict(data.get("wildcards") or {}),
            data.get("slurm_job_id"),
        )
        running = not _flock_free(marker)
        if job.host != HOST and job.slurm_job_id:  # SLURM knows better than a lock over a network file system
            said = _slurm_alive(job.slurm_job_id)
            running = running if said is None else said
        if running:
            alive.append(job)
        elif remove_stale:
            marker.unlink(missing_ok=True)
    return alive


def refuse_live_jobs(results_dir: str | os.PathLike[str]) -> None:
    """One line naming the first job of an earlier run that still writes in ``results_dir`` (and how to stop it)."""
    alive = live_jobs(results_dir, remove_stale=True)
    if alive:
        job = alive[0]
        stop = f"scancel {job.slurm_job_id}" if job.slurm_job_id else f"kill {job.pid}"
        more = f" and {len(alive) - 1} more" if len(alive) > 1 else ""
        raise FolderHeld(
            f"results folder '{results_dir}' is still written by a job of an earlier run: {job.describe()}{more} "
            f"(fix: wait for it to end, or stop it ({stop}), then run the same command again)"
        )


# ------------------------------------------------------------------------------------------- temporaries


def nested_studies(root: Path, dirnames: list[str], here: Path) -> None:
    """Drop from ``dirnames`` (an ``os.walk`` listing of ``here``) the results folders of other studies and the
    workflow's own records."""
    dirnames[:] = [d for d in dirnames if d != STATE and not is_study_folder(here / d)]


def stale_temporaries(results_dir: str | os.PathLike[str], any_host: bool = False) -> list[Path]:
    """The temporaries of the workflow's own atomic writes under ``results_dir`` (``.<name>.<host>-<pid>.<random>.tmp``,
    files or folders) whose writer is gone: on this host, a process that no longer runs; on another host, only with
    ``any_host`` (start-up, once no job of an earlier run is alive)."""
    root = Path(results_dir)
    out: list[Path] = []
    if not root.is_dir():
        return out
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        nested_studies(root, dirnames, here)
        for name in [*dirnames, *filenames]:
            writer = temporary_writer(name)
            if writer is None:
                continue
            host, pid = writer
            if (host == HOST and not _alive(pid) and pid != os.getpid()) or (host != HOST and any_host):
                out.append(here / name)
        dirnames[:] = [d for d in dirnames if temporary_writer(d) is None]
    return out


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove(paths: Iterable[Path], why: str) -> list[str]:
    """Remove ``paths`` (files or folders), each named in one warning; returns ``path: why`` lines."""
    done = []
    for p in paths:
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
        log.warning("removed %s: %s", p, why)
        done.append(f"{p}: {why}")
    return done


# ---------------------------------------------------------------------------------------- Snakemake's locks


def stale_snakemake_locks(results_dir: str | os.PathLike[str], workdir: str | os.PathLike[str] = ".") -> list[Path]:
    """Snakemake's lock files (``.snakemake/locks/<n>.{input,output}.lock``) of a run of this study, which only a
    killed run leaves (call it while holding the folder's lock: no run of this study is alive then). A lock naming
    files of another study's results folder is another run's and stays."""
    locks = Path(workdir, ".snakemake", "locks")
    root = os.path.normpath(os.path.relpath(Path(results_dir).resolve(), Path(workdir).resolve()))
    out = []
    for lock in sorted(locks.glob("*.lock")) if locks.is_dir() else []:
        try:
            names = [n.strip() for n in lock.read_text(encoding="utf-8").splitlines() if n.strip()]
        except OSError:
            continue
        ours = [n for n in names if os.path.normpath(n) == root or os.path.normpath(n).startswith(root + os.sep)]
        if ours and not any(_inside_nested_study(results_dir, Path(workdir, n)) for n in ours):
            out.append(lock)
    return out


def _inside_nested_study(results_dir: str | os.PathLike[str], path: Path) -> bool:
    root = Path(results_dir).resolve()
    p = path.resolve().parent
    while p != root and root in p.parents:
        if is_study_folder(p):
            return True
        p = p.parent
    return False


# ---------------------------------------------------------------------------------------- damaged outputs


def damaged_outputs(results_dir: str | os.PathLike[str]) -> dict[str, str]:
    """Files the workflow wrote (the ledger) that no longer read back: path -> why. A file changed since it was
    written is checked (headers and footers: :func:`traitscope.core.io.file_problem`); an untouched one is as it was
    written. Files awaiting repair from an earlier start-up (``repair.json``) are still damaged, even when Snakemake
    removed them, until a job rewrites them."""
    out: dict[str, str] = {}
    ledger = written(results_dir)
    pending = _repairs(results_dir)
    for path, (size, mtime, finished) in ledger.items():
        p = Path(path)
        if path in pending and pending[path]["since"] >= finished:
            out[path] = pending[path]["why"]
            continue
        try:
            st = p.stat()
        except OSError:
            continue  # removed: Snakemake does not need intermediates that a finished output no longer depends on
        if (st.st_size, st.st_mtime_ns) == (size, mtime):
            continue
        problem = file_problem(p)
        if problem:
            out[path] = problem
    return out


def _repairs(results_dir: str | os.PathLike[str]) -> dict[str, dict[str, Any]]:
    try:
        data = json.loads(state(results_dir, "repair.json").read_text(encoding="utf-8"))
        return {str(k): dict(v) for k, v in data.items()}
    except (OSError, ValueError, TypeError, AttributeError):
        return {}


def note_repairs(results_dir: str | os.PathLike[str], damaged: dict[str, str]) -> None:
    """Keep ``damaged`` (path -> why) in ``repair.json`` until jobs rewrite them (a run may be killed after
    Snakemake removed them)."""
    from ..core.io import write_json

    now = time.time()
    pending = {p: v for p, v in _repairs(results_dir).items() if p in damaged}
    pending.update({p: pending.get(p) or {"why": why, "since": now} for p, why in damaged.items()})
    path = state(results_dir, "repair.json")
    if pending:
        write_json(path, pending)
    else:
        path.unlink(missing_ok=True)


# --------------------------------------------------------------------------------------------- start-up


class Startup(NamedTuple):
    """What start-up did: whether this invocation runs jobs, the lock it holds, and what it removed."""

    executing: bool
    lock: IO[str] | None
    removed: list[str]


def start(
    results_dir: str | os.PathLike[str], workdir: str | os.PathLike[str] = ".", executing: bool = True
) -> Startup:
    """The start-up of an invocation (see the module's docstring). ``executing``: it runs jobs (otherwise nothing
    under ``results_dir`` is created, changed or removed)."""
    if not executing:
        return Startup(False, None, [])
    lock = hold(results_dir)
    try:
        refuse_live_jobs(results_dir)
    except FolderHeld:
        lock.close()
        raise
    removed = remove(stale_temporaries(results_dir, any_host=True), "a temporary a killed job left")
    removed += remove(stale_snakemake_locks(results_dir, workdir), "Snakemake's lock of a killed run of this study")
    return Startup(True, lock, removed)
