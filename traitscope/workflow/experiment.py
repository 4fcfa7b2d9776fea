"""What an experiment is to the workflow: one class per experiment, one instance in the registry.

An experiment (``traitscope/experiments/<name>.py``) subclasses :class:`Experiment` and answers, from its typed
settings, every question the workflow asks of it: which (variant, prompt set) pairs it projects or whose activations
it reads, which prompt sets it scores (checked for overlap with extraction prompts), which sets are two conditions
that must differ, where its results go, what the viewer shows side by side, what its finding is. The workflow seam
(``Study``, the config checks, the overlap check, the budget, the viewer, the rules) loops over the registry
(:data:`traitscope.experiments.REGISTRY`) and never names an experiment.

An experiment is one folder, ``traitscope/experiments/<name>/``: its ``__init__`` (the :class:`Experiment`), its
``analysis``, ``schema.yaml`` (its config section), ``rules.smk`` (its rules), ``scripts/`` (the rules' thin scripts,
named in ``script:`` relative to ``rules.smk``) and ``report/`` (the captions of what it registers in the report, found
by ``reported`` beside the rule file) and ``example.yaml`` (an example section and what it needs: the tiny test study
is built from them, and the configuration reference shows them). The base class finds ``schema.yaml``,
``rules.smk`` and ``example.yaml`` beside the module, so a subclass sets only its name, title and settings.

One name per concept: ``name`` is the experiment's config section, its folder, its results folder ``results/<name>/``
and (as ``title``) its report category.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

import yaml

from ..core.specs import Params, build

if TYPE_CHECKING:
    from .layout import Layout

Finding = tuple[str, str, bool | None]
"""(experiment, one-line finding, whether it beats its control; None where there is no single verdict)."""


class Panel(NamedTuple):
    """One column of a view: the tokens of ``variant`` on ``prompt_set``."""

    label: str
    variant: str
    prompt_set: str


class Comparison(NamedTuple):
    """Panels shown side by side, row by row: paired by prompt id where the sets share ids, else by position. Scores
    are shown relative to the mean token score of panel ``reference`` (the base, the control condition)."""

    name: str
    panels: tuple[Panel, ...]
    note: str = ""
    reference: int = 0


class SaeComparison(NamedTuple):
    """Two conditions an experiment contrasts, on which SAE features are compared: condition a (labelled 1) against
    b."""

    a_variant: str
    a_set: str
    b_variant: str
    b_set: str
    a_label: str
    b_label: str


class StudyView(Protocol):
    """What an experiment's hooks read of the study (:class:`~traitscope.workflow.settings.Study` has it all): the
    narrow view keeps this module free of the settings module, which imports it."""

    @property
    def variants(self) -> dict[str, Any]: ...

    @property
    def finetune(self) -> dict[str, Any]: ...

    @property
    def capture(self) -> Any: ...

    @property
    def extract(self) -> Any: ...

    def n_layers(self, variant: str) -> int: ...

    def sae_comparisons(self) -> dict[str, SaeComparison]: ...


class Experiment:
    """Base class of an experiment; every hook has a default that contributes nothing.

    Class attributes a subclass sets: ``name``, ``title``, ``settings`` (a NamedTuple class without defaults: the
    schema fragment ``schema`` holds every default), and, where the section is not top-level, ``config_key``.
    """

    name: str = ""
    title: str = ""
    settings: type = tuple
    config_key: tuple[str, ...] = ()  # where the section sits in the config; () means (name,)
    schema: str | Path = ""  # the JSON-schema fragment of the section (YAML): schema.yaml beside the module
    rules: str | Path = ""  # the rule file: rules.smk beside the module
    example: str | Path = ""  # an example section and what it needs (YAML): example.yaml beside the module
    uses_judge: bool = False  # its jobs call the judge (start-up checks the judge model)
    caches: dict[str, str] = {}  # its folders under cache/ that clean may empty, and why
    # the settings fields each of its rules' outputs does not depend on: left out of that rule's params (:meth:`params`)
    left_out: dict[str, tuple[str, ...]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """``schema``, ``rules`` and ``example`` default to ``schema.yaml``, ``rules.smk`` and ``example.yaml`` in the
        subclass's own folder."""
        super().__init_subclass__(**kwargs)
        module = sys.modules.get(cls.__module__)
        folder = Path(module.__file__).parent if module is not None and module.__file__ else None
        for attr, name in (("schema", "schema.yaml"), ("rules", "rules.smk"), ("example", "example.yaml")):
            if folder is not None and not cls.__dict__.get(attr) and (folder / name).is_file():
                setattr(cls, attr, folder / name)

    def __repr__(self) -> str:
        return f"<experiment {self.name}>"

    # ---------------------------------------------------------------- configuration
    def key(self) -> tuple[str, ...]:
        return self.config_key or (self.name,)

    def dotted(self, field: str = "") -> str:
        """The config key of the section, or of one of its fields, for error messages."""
        return ".".join(self.key() + ((field,) if field else ()))

    def section(self, cfg: dict[str, Any]) -> dict[str, Any] | None:
        """The section's raw (schema-completed) data in ``cfg``, or None when the study does not configure it."""
        data: Any = cfg
        for k in self.key():
            data = (data or {}).get(k)
        return data or None

    def schema_fragment(self) -> dict[str, Any]:
        return yaml.safe_load(Path(self.schema).read_text(encoding="utf-8")) if self.schema else {"type": "object"}

    def params(self, s: Any, rule: str) -> Any:
        """The settings ``s`` as rule ``rule`` passes them: :class:`~traitscope.core.specs.Params` without the fields
        :attr:`left_out` names for it (Snakemake then re-runs the job for a change to any other field only)."""
        return Params(s, self.left_out.get(rule, ()))

    def example_config(self) -> dict[str, Any]:
        """``{"section": ..., "needs": {"variants"|"finetune"|"prompt_sets": {...}}}`` from ``example.yaml`` (empty
        when the experiment has none)."""
        if not self.example:
            return {}
        return yaml.safe_load(Path(self.example).read_text(encoding="utf-8")) or {}

    def build(self, data: dict[str, Any]) -> Any:
        """The typed settings from the section's schema-completed data."""
        return build(self.settings, data)

    def check(self, cfg: dict[str, Any], dims: dict[str, Any], base_dir: Path, configured: list[Any]) -> None:
        """Cross-reference checks of the section against the whole schema-completed config (after the core's checks;
        ``dims``: each variant's :class:`~traitscope.core.specs.ModelDims`; ``configured``: (experiment, settings) of
        every configured experiment): raise a :class:`~traitscope.ConfigError` naming the key and the fix."""

    def condition_pairs(self, s: Any) -> list[tuple[str, str, str, str]]:
        """Prompt sets that stand for two conditions this experiment compares, so they must differ: (key of the
        first, its set, key of the second, its set)."""
        return []

    # ---------------------------------------------------------------- what its jobs read
    def projected_pairs(self, s: Any) -> set[tuple[str, str]]:
        """(variant, prompt set) pairs it reads trait scores of: captured and projected."""
        return set()

    def activation_pairs(self, study: StudyView, s: Any) -> set[tuple[str, str]]:
        """(variant, prompt set) pairs whose raw activations it reads."""
        return set()

    def scored_sets(self, s: Any) -> list[str]:
        """Prompt sets it scores on trait vectors: compared with every trait's extraction prompts at start-up."""
        return sorted({pset for _, pset in self.projected_pairs(s)})

    def prompt_sets(self, s: Any) -> list[str]:
        """Prompt sets its jobs read beyond the scored ones (e.g. the prompts it generates from)."""
        return []

    def per_token_baseline(self, s: Any, pset: str) -> bool:
        """Whether the random-direction baseline of ``pset`` must be kept per token for this experiment."""
        return False

    def sae_comparisons(self, s: Any) -> dict[str, SaeComparison]:
        """Its two-condition contrasts that SAE features are compared on (``results/sae/<key>/``)."""
        return {}

    def variants(self, s: Any) -> list[str]:
        """Variants its jobs load a model of."""
        return []

    # ---------------------------------------------------------------- what it writes and shows
    def folder(self, lay: Layout, *parts: object) -> str:
        return lay.path(self.name, *parts)

    def targets(self, study: StudyView, s: Any, lay: Layout) -> list[str]:
        """The files ``results/all`` requires of it."""
        return []

    def comparisons(self, s: Any) -> list[Comparison]:
        """The viewer's side-by-side views of this experiment's prompt sets."""
        return []

    def results(self) -> dict[str, str]:
        """Its JSON results for :class:`traitscope.results.Results`: result name -> glob under the results folder. In
        the name, ``{}`` or ``{0}`` is the folder that holds the file, ``{1}`` the folder above it, and so on
        (``{"steering/{1}/{0}": "steering/*/*/*/versus_random.json"}`` names one ``steering/safety/evil``)."""
        return {}

    def findings(self, res: Any) -> Iterator[Finding]:
        """Its finding in one line beside its control, from its JSON result (``res`` is a
        :class:`traitscope.results.Results`)."""
        return iter(())

    def measurements(self, res: Any) -> list[str]:
        """Its section of ``docs/measurements.md`` (Markdown lines) from a finished run."""
        return []


def verdict(beats: bool) -> str:
    return "beats random directions" if beats else "does NOT beat random directions"
