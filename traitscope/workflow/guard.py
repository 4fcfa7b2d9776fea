"""One run per results folder, and a clean start after a crash.

At start-up the Snakefile (its main process only, not cluster jobs) calls :func:`hold` and then :func:`tidy`:

* :func:`hold` takes an exclusive lock on ``<results_dir>/.traitscope.lock`` for the life of the process. A second
  ``snakemake`` on the same results folder stops at once with one line naming the process that holds it, instead of
  Snakemake's IncompleteFilesException about the first run's files. The kernel releases the lock when the process
  ends, however it ends, so a killed run never leaves a stale lock behind.
* :func:`tidy` removes what a killed job left: the temporary files of atomic writes (``.<name>.<random>.tmp``), and
  every table, tensor file or JSON under the results folder that cannot be read back (truncated, garbled, empty:
  :func:`traitscope.core.io.file_problem`), each with a warning naming it, so that Snakemake sees it missing and
  computes it again. Caches are left to their own checksums (:func:`traitscope.core.io.read_verified`).
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path
from typing import IO

from ..core.errors import TraitscopeError
from ..core.io import file_problem

log = logging.getLogger(__name__)
LOCK_NAME = ".traitscope.lock"


class FolderHeld(TraitscopeError):
    """Another run holds the results folder."""


def hold(results_dir: str | os.PathLike[str]) -> IO[str]:
    """Lock ``results_dir`` for this process; keep the returned handle open as long as the run lasts."""
    import fcntl

    folder = Path(results_dir)
    folder.mkdir(parents=True, exist_ok=True)
    handle = open(folder / LOCK_NAME, "a+")  # noqa: SIM115 - held open for the life of the process
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
    handle.write(f"pid {os.getpid()}, started {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
    handle.flush()
    return handle


def tidy(results_dir: str | os.PathLike[str], skip: tuple[str, ...] = ("cache",)) -> list[str]:
    """Remove leftover temporaries and unreadable outputs below ``results_dir`` (not in the ``skip`` folders);
    returns what was removed, each as ``path: why``."""
    root = Path(results_dir)
    removed: list[str] = []
    if not root.is_dir():
        return removed
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        if here == root:
            dirnames[:] = [d for d in dirnames if d not in skip]
        for d in [d for d in dirnames if d.startswith(".") and d.endswith(".tmp")]:  # a killed job's work folder
            shutil.rmtree(here / d, ignore_errors=True)
            removed.append(f"{here / d}: a temporary folder left by a killed job")
            log.warning("removed %s: a temporary folder left by a killed job", here / d)
            dirnames.remove(d)
        for name in filenames:
            path = here / name
            why: str | None
            if name.startswith(".") and name.endswith(".tmp"):
                why = "a temporary file left by a killed job"
            else:
                problem = file_problem(path)
                why = f"unreadable, {problem}" if problem else None
            if why:
                path.unlink(missing_ok=True)
                removed.append(f"{path}: {why}")
                log.warning("removed %s: %s; it is computed again", path, why)
    return removed
