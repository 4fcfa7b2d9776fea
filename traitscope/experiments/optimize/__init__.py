"""Steering evaluation and CMA-ES optimisation of steering vectors against a judge.

The coefficient is in units of the mean activation norm at the trait's layer and site (:mod:`traitscope.core.sweep`).

CMA-ES (the ``cma`` package) searches a ``k``-dimensional PCA subspace of the trait's extraction
activations at its layer: ``v(z) = u0 + B^T z`` (``u0`` the unit extracted vector, ``B`` the top-``k``
principal axes), starting at ``z = 0`` (the extracted vector). Fitness = judged trait change under
steering (mean over prompts of score with ``v(z)`` minus the unsteered score), maximised. Prompts are
split in two (seeded): the search sees only ``train``; ``extraction_gap`` reports both halves.

Checkpoints are JSON: after each generation, its candidates and fitnesses. A resumed run replays
``ask``/``tell`` with the same seed and the recorded fitnesses, which restores the exact search state
without pickles, then continues.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from ...workflow.checks import check_steering_section
from ...workflow.experiment import Experiment, Finding, StudyView

if TYPE_CHECKING:
    from ...workflow.layout import Layout


class OptimizeSettings(NamedTuple):
    traits: tuple[str, ...]
    prompt_set: str
    n_prompts: int
    coefficient: float
    population: int
    iterations: int
    sigma0: float
    pca_components: int
    max_new_tokens: int


class Optimize(Experiment):
    name = "optimize"
    caches = {"optimize": "CMA-ES state (the optimised vector is written)"}
    title = "Optimize"
    settings = OptimizeSettings
    uses_judge = True

    def check(self, cfg: dict[str, Any], dims: dict[str, Any], base_dir: Path, configured: list) -> None:
        check_steering_section(self, cfg, dims)

    def prompt_sets(self, s: OptimizeSettings) -> list[str]:
        return [s.prompt_set]

    def optimized(self, lay: Layout, variant: str = "{variant}", trait: str = "{category}/{trait}") -> dict[str, str]:
        return {
            "vector": self.folder(lay, variant, trait, "vector.safetensors"),
            "sidecar": self.folder(lay, variant, trait, "vector.json"),
            "history": self.folder(lay, variant, trait, "history.parquet"),
        }

    def files(self, lay: Layout) -> dict[str, str]:
        return {"json": self.folder(lay, "extraction_gap.json"), "figure": self.folder(lay, "optimization_curves.png")}

    def targets(self, study: StudyView, s: OptimizeSettings, lay: Layout) -> list[str]:
        return list(self.files(lay).values())

    def results(self) -> dict[str, str]:
        return {"optimize": "optimize/extraction_gap.json"}

    def findings(self, res: Any) -> Iterator[Finding]:
        if "optimize" not in res.experiments():
            return
        for trait, g in res.experiment("optimize")["traits"].items():
            held = g["heldout"]
            yield (
                f"Optimize: {trait}",
                f"CMA-ES's best training change {g['train_delta_best']:+.1f} vs {g['random_search_delta_best']:+.1f} "
                f"for random search at the same budget; held out (n={held['n_prompts']}): optimised "
                f"{held['optimised_delta']:+.1f} vs extracted {held['extracted_delta']:+.1f}, cosine {g['cosine']:.2f}",
                bool(g["beats_random_search"]),
            )


EXPERIMENT = Optimize()
