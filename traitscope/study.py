"""A study from its config, with every registered experiment: what the Snakefile, the tests and notebooks load.

::

    from traitscope.study import load_config
    study = load_config(yaml.safe_load(open("config/config.yaml")))
    study.backdoor                      # an experiment's typed settings (None when not configured)
    study.projected_pairs()             # every (variant, prompt set) captured and projected

:func:`traitscope.workflow.config.load_config` does the work; this module hands it the registry
(:data:`traitscope.experiments.REGISTRY`), so that the workflow seam itself never imports an experiment.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .experiments import REGISTRY
from .workflow import config as _config
from .workflow.settings import Study


def load_config(
    config: dict[str, Any],
    base_dir: str | Path = ".",
    resources_dir: str | Path = "resources",
    check: bool = True,
    jobs_on: str = "local",
) -> Study:
    """Validate a raw config (schema, then semantics) into the typed :class:`Study` with every experiment. ``jobs_on``:
    ``cluster`` when its jobs run on cluster nodes (variants are checked against the device their jobs ask for)."""
    return _config.load_config(config, base_dir, resources_dir, check, experiments=REGISTRY, jobs_on=jobs_on)


def load_schema() -> dict[str, Any]:
    """The whole config schema: the core's and every experiment's section."""
    return _config.load_schema(REGISTRY)


def section(name: str, data: dict[str, Any] | None = None) -> Any:
    """One typed section (a core section or an experiment's) from a partial dict, with the schema's defaults."""
    return _config.section(name, data, REGISTRY)


def validate_schema(config: dict[str, Any]) -> dict[str, Any]:
    return _config.validate_schema(config, REGISTRY)
