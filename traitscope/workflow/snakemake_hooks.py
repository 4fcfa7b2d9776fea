"""Where the workflow reaches into Snakemake (9.x) beyond its documented Snakefile API, each for one reason the
Snakefile cannot serve otherwise; all are applied by ``rules/common.smk`` in the main process, and each has a test
that fails when Snakemake changes under it (``tests/test_recovery.py``).

* :func:`when_planned`: Snakemake hands the workflow its DAG settings (``--forcerun``, ``--rerun-incomplete``) only
  after the Snakefile is read, so the Snakefile cannot add to them; a subclass of the workflow's class intercepts
  the assignment.
* :func:`sigterm_safe_scheduler`: Snakemake's scheduler takes a non-reentrant lock in its SIGTERM handler, which
  runs in the main thread; a SIGTERM that arrives while the main thread holds that lock (the instant a job ends)
  hangs ``snakemake`` for good. A reentrant lock lets the handler in, so ``kill``/``scancel`` stop it in seconds.
* :func:`producible`: whether a rule of the current study still writes a file, through the rule's own pattern
  and input functions (Snakemake's ``Rule.is_producer``, ``get_wildcards``, ``expand_input``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def producible(rules: Iterable[Any], path: str) -> bool:
    """Whether one of ``rules`` (Snakemake's, once the Snakefile is read) writes ``path`` in the current study: its
    output pattern matches and its inputs can be named for those wildcards (an output of a prompt set, variant or
    trait that the config no longer has cannot)."""
    for rule in rules:
        try:
            if not rule.is_producer(path):
                continue
            rule.expand_input(rule.get_wildcards(path))
            return True
        except Exception:  # noqa: BLE001 - an input function of a removed wildcard value raises (KeyError, ...)
            continue
    return False


def when_planned(workflow: Any, adjust: Any) -> None:
    """Call ``adjust(settings)`` on the DAG settings Snakemake gives ``workflow`` once the Snakefile is read (the
    command line's targets, ``--forcerun``, ``--rerun-incomplete``), before it plans: how the workflow adds its own
    forced outputs to the user's. Snakemake assigns them after parsing, so the Snakefile cannot set them directly;
    a subclass of the workflow's class intercepts the assignment (no other behaviour changes)."""
    cls = type(workflow)

    def get(self: Any) -> Any:
        return self.__dict__.get("dag_settings")

    def put(self: Any, value: Any) -> None:
        if value is not None:
            adjust(value)
        self.__dict__["dag_settings"] = value

    workflow.__class__ = type(cls.__name__, (cls,), {"dag_settings": property(get, put)})
    if workflow.__dict__.get("dag_settings") is not None:  # already planned (an API that assigned them first)
        adjust(workflow.__dict__["dag_settings"])


def sigterm_safe_scheduler() -> bool:
    """Give Snakemake's job scheduler a reentrant lock (see the module's docstring); False when its scheduler no
    longer has the lock this works around (then nothing is changed)."""
    import threading

    try:
        from snakemake.scheduling.job_scheduler import JobScheduler
    except ImportError:
        return False
    init = JobScheduler.__init__
    if getattr(init, "_traitscope_rlock", False):
        return True

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        if type(getattr(self, "_lock", None)) is type(threading.Lock()):
            self._lock = threading.RLock()

    __init__._traitscope_rlock = True  # type: ignore[attr-defined]
    JobScheduler.__init__ = __init__
    return True
