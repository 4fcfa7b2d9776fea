"""The experiments: one small package each, registered once in :data:`MODULES`.

Each experiment is one folder. Its ``__init__`` is the experiment (``EXPERIMENT``, an
:class:`~traitscope.workflow.experiment.Experiment`): its settings type, its config checks, the (variant, prompt set)
pairs it scores or reads, its output paths, its viewer panels, its finding and its measurements; it stays light,
because every start-up imports it. Its ``analysis`` module holds the analysis and the figures, ``schema.yaml`` its
config section, ``rules.smk`` its rules, ``scripts/`` their job scripts and ``report/`` their captions. The workflow (``Study``, the config checks, the overlap check, the budget, the
viewer, the Snakefile) loops over this registry and names no experiment.

Adding an experiment: its own files, and one line below (``CONTRIBUTING.md`` walks through it).
"""

from __future__ import annotations

import importlib

from ..workflow.experiment import Experiment

MODULES = (
    "traitscope.experiments.harm_separation",
    "traitscope.experiments.emergent_misalignment",
    "traitscope.experiments.external",
    "traitscope.experiments.prefill_attack",
    "traitscope.experiments.backdoor",
    "traitscope.experiments.organism",
    "traitscope.experiments.adapter_probe",
    "traitscope.experiments.shared_directions",
    "traitscope.experiments.trajectory",
    "traitscope.experiments.sae",
    "traitscope.experiments.steering",
    "traitscope.experiments.optimize",
)
"""The registry, in pipeline order (the order of the report, the findings and the measurements)."""


def registry(modules: tuple[str, ...] = MODULES) -> tuple[Experiment, ...]:
    """The registered experiments: the ``EXPERIMENT`` of each module. A name another experiment, a core config
    section or a core results folder already has is a one-line :class:`~traitscope.ConfigError` (an experiment's
    schema would silently replace the core section's, or its results overwrite the core's)."""
    from ..core.errors import ConfigError
    from ..workflow.config import load_schema
    from ..workflow.layout import Layout

    schema, folders = load_schema(), Layout.core_names()
    found: list[Experiment] = []
    for name in modules:
        experiment = importlib.import_module(name).EXPERIMENT
        clash = next((e for e in found if e.name == experiment.name), None)
        where = (
            f"the experiment {clash.__class__.__module__}"
            if clash
            else "a core config section"
            if _in_schema(schema, experiment.key())
            else "a folder of the core's results"
            if experiment.name in folders
            else None
        )
        if where:
            raise ConfigError(
                f"experiment {experiment.name!r} ({name}) has the name of {where} (fix: rename it, its folder "
                "and its config section)"
            )
        found.append(experiment)
    return tuple(found)


def _in_schema(schema: dict, key: tuple[str, ...]) -> bool:
    """Whether the core's schema already has the config key ``key`` (a section, or a key nested in one)."""
    node = schema
    for k in key:
        props = node.get("properties") or {}
        if k not in props:
            return False
        node = props[k]
    return True


def __getattr__(name: str) -> tuple[Experiment, ...]:
    """``REGISTRY``: the registered experiments, built at first use, so that a job importing one experiment's
    analysis imports that experiment alone."""
    if name == "REGISTRY":
        globals()["REGISTRY"] = value = registry()
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
