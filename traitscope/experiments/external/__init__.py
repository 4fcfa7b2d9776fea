"""External harm datasets: do trait scores predict harm, per harm category?

The input is one or more captured prompt sets whose rows carry a ``label`` (1 unsafe / harmful, 0 safe /
harmless) and, for unsafe rows, a ``category`` (several joined by ``|``): BeaverTails QA pairs, HarmBench or
AdvBench behaviors together with a harmless set, or any table with those columns.

For each trait (at its best layer, pooled at its extraction position) and each harm category:

* the unsafe rows flagged with the category are compared with safe rows; the safe rows are, in order of
  preference, those of the same category (data that categorises safe rows too), those with the same prompts
  (BeaverTails answers one prompt several times, safely and unsafely), or else every safe row. Which one was
  used is reported as ``negatives``.
* ROC-AUC (scikit-learn) with a stratified percentile bootstrap 95% CI, Cohen's d, and the mean scores of
  both groups. ``overall`` compares every unsafe row with every safe row.
* severity: Spearman's rho between score and a severity field of the data, where the data has one (over all
  rows with a value, and over the unsafe rows only).
* control baseline: where ``random`` is given (the scores of seeded random unit directions at the trait's layer and
  position, :class:`~traitscope.core.artifacts.BaselineScores`), every AUC is reported beside the AUCs of those
  directions on the same unsafe and safe rows: their mean and 95th percentile, the AUC's percentile among them and
  ``beats_random``.
* failure cases: unsafe rows scoring below the threshold that flags ``fpr`` of the safe rows (the
  ``1 - fpr`` quantile of safe scores), the lowest first, with their text.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from ...core.specs import PromptSetSpec, build
from ...workflow.checks import SET_NAME, check_projected_method, check_vector_variant, config_error
from ...workflow.experiment import Experiment, Finding, StudyView
from ...workflow.tables import ci, fmt, table, yes

if TYPE_CHECKING:
    from ...workflow.layout import Layout


class ExternalDataset(NamedTuple):
    prompt_sets: tuple[str, ...]
    severity: str | None


class ExternalSettings(NamedTuple):
    variant: str
    method: str
    position: str | None
    min_per_class: int
    n_boot: int
    failure_fpr: float
    n_failures: int
    datasets: dict[str, ExternalDataset]


class External(Experiment):
    name = "external"
    # one job per dataset: its own dataset is a param of its own
    left_out = {"external": ("datasets",)}
    title = "External"
    settings = ExternalSettings

    def check(self, cfg: dict[str, Any], dims: dict[str, Any], base_dir: Path, configured: list) -> None:
        ext = self.section(cfg) or {}
        check_vector_variant(cfg, dims, ext["variant"], self.dotted("variant"))
        check_projected_method(cfg, ext["method"], self.dotted("method"))
        for name, ds in ext["datasets"].items():
            if not SET_NAME.match(name):
                raise config_error(
                    self.dotted(f"datasets.{name}"), "names may use letters, digits and _ only", f"rename '{name}'"
                )
            for s in ds["prompt_sets"]:
                if s not in cfg["prompt_sets"]:
                    raise config_error(
                        self.dotted(f"datasets.{name}.prompt_sets"),
                        f"unknown prompt set {s!r}",
                        f"use one of {sorted(cfg['prompt_sets'])}",
                    )
            check_labelled(cfg, self.dotted(f"datasets.{name}"), ds["prompt_sets"], base_dir)

    def projected_pairs(self, s: ExternalSettings) -> set[tuple[str, str]]:
        return {(s.variant, p) for d in s.datasets.values() for p in d.prompt_sets}

    def scored_sets(self, s: ExternalSettings) -> list[str]:
        return [p for d in s.datasets.values() for p in d.prompt_sets]

    def files(self, lay: Layout, dataset: str = "{dataset}") -> dict[str, str]:
        return {
            "json": self.folder(lay, dataset, "results.json"),
            "table": self.folder(lay, dataset, "per_category.parquet"),
            "scores": self.folder(lay, dataset, "scores.parquet"),
            "failures": self.folder(lay, dataset, "failure_cases.json"),
            "figure": self.folder(lay, dataset, "per_category_auc.png"),
        }

    def targets(self, study: StudyView, s: ExternalSettings, lay: Layout) -> list[str]:
        return [self.files(lay, d)[k] for d in s.datasets for k in ("json", "figure", "failures")]

    def results(self) -> dict[str, str]:
        return {"external/{}": "external/*/results.json"}

    def findings(self, res: Any) -> Iterator[Finding]:
        for name in (n for n in res.experiments() if n.startswith("external/")):
            e = res.experiment(name)
            parts, beaten = [], 0
            for trait, r in e["traits"].items():
                o = r["overall"]
                beaten += bool(o["beats_random"])
                parts.append(f"{trait} {o['auc']:.2f} vs {o['random_auc_p95']:.2f}")
            yield (
                f"External: {e['dataset']}",
                f"unsafe vs safe rows ({e['n_unsafe']} vs {e['n_safe']}), AUC vs "
                f"random 95th percentile: {'; '.join(parts)}; {beaten} of {len(parts)} traits beat random "
                "directions",
                beaten > 0,
            )

    def measurements(self, res: Any) -> list[str]:
        out: list[str] = []
        for name in sorted(n for n in res.experiments() if n.startswith("external/")):
            e = res.experiment(name)
            out += [
                f"## External dataset: {e['dataset']}",
                "",
                f"{e['n_unsafe']} unsafe vs {e['n_safe']} safe rows.",
                "",
            ]
            rows = [
                [
                    t,
                    r["layer"],
                    r["position"],
                    f"{fmt(r['overall']['auc'])} {ci(r['overall']['ci_low'], r['overall']['ci_high'])}",
                    fmt(r["overall"]["random_auc_p95"]),
                    yes(r["overall"]["beats_random"]),
                ]
                for t, r in sorted(e["traits"].items())
            ]
            out += table(["trait", "layer", "position", "AUC [95% CI]", "random p95", "beats"], rows)
        return out


EXPERIMENT = External()


def check_labelled(cfg: dict[str, Any], key: str, sets: list[str], base_dir: Path) -> None:
    """An external dataset compares unsafe (label 1) with safe (0) rows: every row of its sets needs a label and
    both classes must be there, or its AUCs would silently be null."""
    from ...core.prompts import startup_table

    labels: set[int] = set()
    for s in sets:
        table = startup_table(s, build(PromptSetSpec, cfg["prompt_sets"][s]), base_dir, cfg["seed"])
        if table is None:  # known only after prep: the external job checks it
            return
        missing = int(table["label"].isna().sum())
        if missing:
            raise config_error(
                f"prompt_sets.{s}",
                f"{missing} of {len(table)} rows have no label, but {key} compares unsafe (1) with safe (0) rows",
                "map a 0/1 column with fields.label, or give the set a constant label: 0 or 1",
            )
        labels |= set(table["label"].dropna().astype(int))
    if labels != {0, 1}:
        raise config_error(
            f"{key}.prompt_sets",
            f"the sets {sets} hold only label {sorted(labels)}",
            "add a set of the other class (e.g. benign prompts with label: 0)",
        )
