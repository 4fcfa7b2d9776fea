"""SAE features: a sparse autoencoder per layer (trained here on the corpus's activations, or loaded in the SAELens
format), then, for each two-condition contrast another experiment declares (backdoor trigger vs control, organism
finetuned vs base, prefill C2 vs C4), the features that tell the conditions apart, against random directions.

``autoencoder``: the SAE (training, loading, reconstruction metrics); ``features``: the comparison and its figure.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from ...core.layers import parse_layers
from ...workflow.checks import config_error
from ...workflow.experiment import Experiment, Finding, StudyView
from ...workflow.tables import fmt, table, yes
from .sources import is_remote, local_files

if TYPE_CHECKING:
    from ...workflow.layout import Layout


class SaeSettings(NamedTuple):
    layers: tuple[int, ...]
    source: str
    variant: str | None
    corpus: tuple[str, ...]
    n_features: int
    k: int
    steps: int
    batch_size: int
    lr: float
    holdout: float
    position: str
    selection_fraction: float
    top_features: int
    top_tokens: int
    n_random: int
    n_boot: int


TRAINING = ("n_features", "k", "steps", "batch_size", "lr", "holdout")
"""The settings a trained SAE depends on (with its layer); the rest only change the comparisons."""


class Sae(Experiment):
    name = "sae"
    title = "SAE"
    settings = SaeSettings

    def check(self, cfg: dict[str, Any], dims: dict[str, Any], base_dir: Path, configured: list) -> None:
        """SAE layers are captured layers of every variant the SAE reads; its position is captured; it has something
        to compare; its corpus sets exist."""
        sae = self.section(cfg) or {}
        if not any(e.sae_comparisons(s) for e, s in configured):
            raise config_error(
                "sae",
                "no experiment to compare SAE features on",
                "configure backdoor, organism or prefill_attack, or remove the sae section",
            )
        variant = sae.get("variant") or cfg["extract"]["variant"]
        if variant not in cfg["variants"]:
            raise config_error("sae.variant", f"unknown variant {variant!r}", f"use one of {sorted(cfg['variants'])}")
        for s in sae["corpus"]:
            if s not in cfg["prompt_sets"]:
                raise config_error(
                    "sae.corpus", f"unknown prompt set {s!r}", f"use one of {sorted(cfg['prompt_sets'])}"
                )
        cap = cfg["capture"]
        stored = "last" if sae["position"] == "last" else "response"
        if stored not in cap["positions"]:
            raise config_error(
                "sae.position",
                f"{sae['position']} needs '{stored}' in capture.positions",
                f"add it to capture.positions or set sae.position to one of {cap['positions']}",
            )
        captured = parse_layers(cap["layers"], dims[variant].n_layers, "capture.layers")
        for layer in sae["layers"]:
            if layer not in captured:
                shown = f"{captured[:5]}..." if len(captured) > 5 else f"{captured}"
                raise config_error(
                    "sae.layers",
                    f"layer {layer} is not captured (capture.layers gives {shown})",
                    "pick captured layers or add them to capture.layers",
                )
        if sae["source"] == "train" and sae["k"] > sae["n_features"]:
            raise config_error("sae.k", f"k={sae['k']} is more than n_features={sae['n_features']}", "lower sae.k")

    # ---- what it reads
    def variant(self, study: StudyView, s: SaeSettings) -> str:
        return s.variant or study.extract.variant

    def corpus(self, study: StudyView, s: SaeSettings) -> tuple[str, ...]:
        return s.corpus or study.capture.prompt_sets

    def activation_pairs(self, study: StudyView, s: SaeSettings) -> set[tuple[str, str]]:
        pairs = {(self.variant(study, s), p) for p in self.corpus(study, s)}
        for c in study.sae_comparisons().values():
            pairs |= {(c.a_variant, c.a_set), (c.b_variant, c.b_set)}
        return pairs

    def training(self, s: SaeSettings, layer: int) -> dict[str, Any]:
        """What a trained SAE depends on: its layer and the training settings (not the comparison settings)."""
        return {"layer": int(layer), **{k: getattr(s, k) for k in TRAINING}}

    def sources(self, lay: Layout, s: SaeSettings) -> dict[int, str]:
        """Layer -> where its SAE comes from: the trained folder, a local SAELens or Gemma Scope folder, hub:<repo>/<path>
        or saelens:<release>/<sae_id> (:mod:`.sources`)."""
        if s.source == "train":
            return {layer: posixpath.dirname(self.trained(lay, layer)["config"]) for layer in s.layers}
        return {layer: s.source.format(layer=layer) for layer in s.layers}

    def source_files(self, lay: Layout, s: SaeSettings) -> list[str]:
        """The files of every SAE the comparisons load (none for a hub or SAELens source: it is downloaded)."""
        files: list[str] = []
        for layer, src in self.sources(lay, s).items():
            if s.source == "train":
                files += [self.trained(lay, layer)[k] for k in ("config", "weights", "training")]
            elif not is_remote(src):
                files += local_files(src)
        return files

    # ---- what it writes
    def trained(self, lay: Layout, layer: object = "{layer}") -> dict[str, str]:
        """A trained SAE in the SAELens folder layout, and its training report."""
        return {
            "config": self.folder(lay, f"layer_{layer}", "cfg.json"),
            "weights": self.folder(lay, f"layer_{layer}", "sae_weights.safetensors"),
            "training": self.folder(lay, f"layer_{layer}", "training.json"),
        }

    def files(self, lay: Layout, comparison: str = "{experiment}") -> dict[str, str]:
        return {
            "json": self.folder(lay, comparison, "features.json"),
            "figure": self.folder(lay, comparison, "features.png"),
        }

    def targets(self, study: StudyView, s: SaeSettings, lay: Layout) -> list[str]:
        return [self.files(lay, c)[k] for c in study.sae_comparisons() for k in ("json", "figure")]

    def results(self) -> dict[str, str]:
        return {"sae/{}": "sae/*/features.json"}

    def findings(self, res: Any) -> Iterator[Finding]:
        for name in sorted(n for n in res.experiments() if n.startswith("sae/")):
            s = res.experiment(name)
            parts, beaten = [], False
            for r in s["layers"]:
                m = r["summary"]
                beats = bool(m["best_feature_beats_random"])
                beaten |= beats
                parts.append(
                    f"layer {r['layer']}: feature {m['best_feature']} AUC {m['best_feature_auc']:.2f} vs random "
                    f"p95 {m['random_auc_p95']:.2f} ({'beats' if beats else 'does not beat'} it; best trait "
                    f"{m['best_trait']} {m['best_trait_auc']:.2f})"
                )
            a, b = s["conditions"]["a"]["label"], s["conditions"]["b"]["label"]
            yield f"SAE features: {s['experiment']}", f"{a} vs {b}, on held-out rows: " + "; ".join(parts), beaten

    def measurements(self, res: Any) -> list[str]:
        out: list[str] = []
        for name in sorted(n for n in res.experiments() if n.startswith("sae/")):
            s = res.experiment(name)
            out += [f"## SAE features: {s['experiment']}", ""]
            rows = [
                [
                    r["layer"],
                    r["summary"]["best_feature"],
                    fmt(r["summary"]["best_feature_auc"]),
                    r["summary"]["best_trait"],
                    fmt(r["summary"]["best_trait_auc"]),
                    fmt(r["summary"]["random_auc_p95"]),
                    yes(r["summary"]["best_feature_beats_random"]),
                    yes(r["summary"]["best_trait_beats_random"]),
                ]
                for r in s["layers"]
            ]
            out += table(
                [
                    "layer",
                    "best feature",
                    "its AUC",
                    "best trait",
                    "its AUC",
                    "random p95",
                    "feature beats",
                    "trait beats",
                ],
                rows,
            )
        return out


EXPERIMENT = Sae()
