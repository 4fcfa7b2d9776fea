"""What the ``snakemake`` command line asks for, as Snakemake itself reads it (profiles included): whether it only
reads (a dry run, a report, a summary, a list, the lint, a graph), whether its jobs run on a cluster, and its
targets. The Snakefile needs this while it is read, before Snakemake hands the workflow its settings."""

from __future__ import annotations

import contextlib
import io
import sys
from collections.abc import Sequence
from typing import Any, NamedTuple

READ_ONLY_FLAGS = (
    "dryrun",
    "summary",
    "detailed_summary",
    "list_rules",
    "list_target_rules",
    "list_input_changes",
    "list_params_changes",
    "list_untracked",
    "list_changes",
    "list_conda_envs",
    "lint",
    "dag",
    "rulegraph",
    "filegraph",
    "d3dag",
    "print_compilation",
    "containerize",
    "export_cwl",
    "generate_unit_tests",
    "archive",
    "unlock",
    "cleanup_metadata",
    "conda_create_envs_only",
)
"""Snakemake options under which an invocation runs no job and writes nothing under the results folder."""

LOCAL_EXECUTORS = (None, "local", "dryrun", "touch")


class Invocation(NamedTuple):
    read_only: bool
    """It only reads: nothing under the results folder is created, changed or removed."""
    cluster: bool
    """Its jobs run elsewhere (an executor plugin such as slurm): start-up checks a job's device, not this host's."""
    targets: tuple[str, ...]


def parse(argv: Sequence[str] | None = None) -> Any:
    """Snakemake's own reading of ``argv`` (default: this process's command line), its profiles applied; None when
    this process is not the ``snakemake`` command (the Python API) or Snakemake refuses the line (it says why)."""
    cli = sys.modules.get("snakemake.cli")
    if cli is None:
        return None
    argv = list(sys.argv[1:] if argv is None else argv)
    quiet = io.StringIO()
    try:
        with contextlib.redirect_stdout(quiet), contextlib.redirect_stderr(quiet):
            return cli.parse_args(argv)[1]
    except BaseException:  # noqa: BLE001 - a line Snakemake will refuse with its own message, or profiles it cannot read
        try:
            return cli.get_argument_parser().parse_known_args(argv)[0]
        except BaseException:  # noqa: BLE001
            return None


def invocation(argv: Sequence[str] | None = None) -> Invocation:
    """What ``argv`` asks for; a run started otherwise than from Snakemake's command line counts as one that runs
    jobs here."""
    args = parse(argv)
    if args is None:
        return Invocation(False, False, ())
    report = bool(getattr(args, "report", None)) and not getattr(args, "report_after_run", False)
    read_only = report or any(getattr(args, flag, None) not in (None, False, [], ()) for flag in READ_ONLY_FLAGS)
    executor = getattr(args, "executor", None)
    return Invocation(read_only, executor not in LOCAL_EXECUTORS, tuple(str(t) for t in (args.targets or ())))
