"""Adapter probing: what a LoRA finetune wrote into the weights, read without running the model.

For every LoRA module of a finetune's adapter (``q_proj`` ... ``down_proj`` in each block), the weight update is
``dW = scale * B @ A`` (``scale = alpha / r``, or ``alpha / sqrt(r)`` with rsLoRA). Its singular value decomposition
gives the update's spectrum and its top directions on the residual-stream side: the output directions of a module
that writes into the stream (``o_proj``, ``down_proj``: :data:`~traitscope.core.dims.LORA_OUTPUTS`), the input
directions of one that reads from it (``q_proj``, ``gate_proj``, ...: :data:`~traitscope.core.dims.LORA_INPUTS`).

Each module's top ``top_k`` directions are compared, by absolute cosine, with the reference directions at the
residual-stream layer they touch: a writer in block ``L`` writes the stream after block ``L`` (trait layer ``L``), a
reader in block ``L`` reads the stream after block ``L - 1`` (block 0 reads the embeddings: no reference there). The
references are each ``resid`` trait's vector (its selection method) and, when the study's organism is this finetune,
the organism's misalignment direction (its chosen method). The control: the same maximum |cosine| of the top
directions with ``n_random`` seeded random unit directions; a cell ``beats_random`` above their 95th percentile. By
construction about 5% of cells beat it by chance. Random directions are isotropic and the residual stream is not:
trait vectors and weight updates can both lean on the stream's few dominant axes, so a share above 5% is read
against the other references and the other finetunes (the backdoor finetune is the bad-advice organism's control).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from ...workflow.checks import config_error
from ...workflow.experiment import Experiment, Finding, StudyView
from ...workflow.tables import fmt, table, yes

if TYPE_CHECKING:
    from ...workflow.layout import Layout


class AdapterProbeSettings(NamedTuple):
    finetunes: tuple[str, ...]  # empty: every finetune of the study
    top_k: int
    n_random: int


class AdapterProbe(Experiment):
    name = "adapter_probe"
    # finetunes reach the job as its adapters (inputs)
    left_out = {"adapter_probe": ("finetunes",)}
    title = "Adapter probe"
    settings = AdapterProbeSettings

    def check(self, cfg: dict[str, Any], dims: dict[str, Any], base_dir: Path, configured: list[Any]) -> None:
        section = self.section(cfg) or {}
        if not cfg["finetune"]:
            raise config_error(self.name, "the study trains no LoRA adapter to probe", "add a finetune: section")
        for ft in section.get("finetunes") or []:
            if ft not in cfg["finetune"]:
                raise config_error(
                    self.dotted("finetunes"), f"unknown finetune {ft!r}", f"use one of {sorted(cfg['finetune'])}"
                )

    def finetunes(self, study: StudyView, s: AdapterProbeSettings) -> list[str]:
        return list(s.finetunes or sorted(study.finetune))

    def files(self, lay: Layout, ft: str = "{ft}") -> dict[str, str]:
        return {
            "json": self.folder(lay, ft, "adapter_probe.json"),
            "table": self.folder(lay, ft, "adapter_probe.parquet"),
            "figure": self.folder(lay, ft, "adapter_probe.png"),
        }

    def targets(self, study: StudyView, s: AdapterProbeSettings, lay: Layout) -> list[str]:
        return [self.files(lay, ft)[k] for ft in self.finetunes(study, s) for k in ("json", "figure")]

    def results(self) -> dict[str, str]:
        return {"adapter_probe/{}": "adapter_probe/*/adapter_probe.json"}

    def findings(self, res: Any) -> Iterator[Finding]:
        for name in (n for n in res.experiments() if n.startswith("adapter_probe/")):
            r = res.experiment(name)
            refs = r["references"]
            parts = [
                f"{ref} {v['n_beats_random']}/{v['n_cells']} (best |cos| {v['best']['cos']:.2f} vs {v['best']['random_p95']:.2f})"
                for ref, v in refs.items()
            ]
            beaten = [ref for ref, v in refs.items() if v["share_beats_random"] > 0.05]
            yield (
                f"Adapter probe: {r['finetune']}",
                "LoRA updates whose top directions align with a reference beyond "
                f"random directions (chance: about 5% of cells): {'; '.join(parts)}",
                bool(beaten),
            )

    def measurements(self, res: Any) -> list[str]:
        out: list[str] = []
        for name in sorted(n for n in res.experiments() if n.startswith("adapter_probe/")):
            r = res.experiment(name)
            out += [
                f"## Adapter probe: {r['finetune']}",
                "",
                f"{r['n_modules']} LoRA updates (module x block); top {r['top_k']} directions of each against "
                f"{r['n_random']} isotropic random directions. Chance: about 5% of cells beat random; the residual stream is "
                "anisotropic, so a share above that can also come from directions a reference shares with the stream's "
                "dominant axes: compare the references with each other, and the finetunes with each other.",
                "",
            ]
            rows = [
                [
                    ref,
                    v["n_cells"],
                    v["n_beats_random"],
                    fmt(v["share_beats_random"]),
                    f"{v['best']['module']} block {v['best']['block']}",
                    fmt(v["best"]["cos"]),
                    fmt(v["best"]["random_p95"]),
                    yes(v["share_beats_random"] > 0.05),
                ]
                for ref, v in r["references"].items()
            ]
            out += table(
                [
                    "reference",
                    "cells",
                    "beat random",
                    "share",
                    "best cell",
                    "its \\|cos\\|",
                    "random p95",
                    "above chance",
                ],
                rows,
            )
        return out


EXPERIMENT = AdapterProbe()
