"""The results layout: every path the rules and the package use, spelled once.

Each method returns a path (or a dict of named paths for an artifact made of several files). Called
without arguments it returns the Snakemake pattern with wildcards (``{variant}``, ``{pset}``, ``{shard}``,
``{category}/{trait}``, ``{ft}``, ``{dataset}``); with arguments, the concrete path.

::

    results/
      prompts/<set>.parquet, prompts/traits/<category>/<trait>.parquet        prep
      finetune/<name>/{train.jsonl.gz, adapter/, loss.parquet, loss.png}       finetune
      extract/<variant>/<category>/<trait>/activations.safetensors            extract (model job)
      vectors/<variant>/<category>/<trait>/vectors.{safetensors,json}         extract (TraitVectors)
        (vectors.auc.json, layer_choice.{parquet,png} with extract.steering_layer_choice)
      activations/<variant>/<set>/shard-<i>.safetensors                       capture (ActivationShard)
      activations/<variant>/<set>/shard-<i>.{scores,tokens}.parquet           capture, capture.stream sets
        (and shard-<i>.baseline.safetensors)
      projections/<variant>/<set>/{scores,tokens}.parquet                     project (one job per set)
      projections/<variant>/<set>/baseline.safetensors                        project (BaselineScores)
      sae/layer_<L>/{cfg.json, sae_weights.safetensors, training.json}       sae_train (SAELens format)
      sae/<experiment>/features.{json,png}                                    sae_features
      extract/summary, checks/, analysis/, emergent_misalignment/, external/, prefill_attack/,
      organism/, backdoor/, steering/, optimize/                              analyze
      cache/{capture,finetune,optimize,judge}/, logs/<rule>/...               resumable work, logs
      all                                                                     provenance manifest
"""

from __future__ import annotations

import posixpath

TRAIT = "{category}/{trait}"


class Layout:
    """Paths under one results folder (and the resources folder for converted embedded models)."""

    def __init__(self, results_dir: str, resources_dir: str = "resources") -> None:
        self.root = results_dir
        self.resources = resources_dir

    def foreign_target(self, targets: object) -> str | None:
        """A one-line error for the first target file outside this study's results and resources folders (asking for
        ``results/all`` of a study whose ``results_dir`` is ``out``), or None. Rule names (``all``) pass."""
        roots = [posixpath.normpath(r) for r in (self.root, self.resources)]
        for target in sorted(str(t) for t in (targets or ())):  # type: ignore[attr-defined]
            norm = posixpath.normpath(target)
            if "/" not in norm or any(norm == r or norm.startswith(r + "/") for r in roots):
                continue
            name = norm.split("/", 1)[1] if norm.count("/") else norm
            return (f"target '{target}' is outside this study's results folder '{self.root}' (results_dir) (fix: ask "
                    f"for {posixpath.join(self.root, name)}, or name the rule: snakemake all)")
        return None

    def path(self, *parts: object) -> str:
        return posixpath.join(self.root, *(str(p) for p in parts))

    # ---------------------------------------------------------------- resources
    def embedded_model(self, name: str = "{name}") -> str:
        return posixpath.join(self.resources, "models", name)

    def gguf_model(self, slug: str = "{slug}") -> str:
        return posixpath.join(self.resources, "models", "gguf", slug)

    def gguf_log(self, slug: str = "{slug}") -> str:
        return posixpath.join(self.resources, "logs", "convert_gguf", f"{slug}.log")

    def embedded_log(self, name: str = "{name}") -> str:
        return posixpath.join(self.resources, "logs", "convert_embedded", f"{name}.log")

    # ---------------------------------------------------------------- prep
    def prompts(self, pset: str = "{pset}") -> str:
        return self.path("prompts", f"{pset}.parquet")

    def trait_prompts(self, trait: str = TRAIT) -> str:
        return self.path("prompts", "traits", f"{trait}.parquet")

    # ---------------------------------------------------------------- finetune
    def finetune_data(self, ft: str = "{ft}") -> str:
        return self.path("finetune", ft, "train.jsonl.gz")

    def adapter(self, ft: str = "{ft}") -> str:
        return self.path("finetune", ft, "adapter")

    def finetune_files(self, ft: str = "{ft}") -> dict[str, str]:
        return {"history": self.path("finetune", ft, "loss.parquet"), "figure": self.path("finetune", ft, "loss.png")}

    # ---------------------------------------------------------------- extract
    def trait_capture(self, variant: str = "{variant}", trait: str = TRAIT) -> dict[str, str]:
        return {"activations": self.path("extract", variant, trait, "activations.safetensors"),
                "responses": self.path("extract", variant, trait, "responses.parquet")}

    def trait_judged(self, variant: str = "{variant}", trait: str = TRAIT) -> str:
        """Judge scores of a persona trait's generated answers, with each row's keep/drop decision."""
        return self.path("extract", variant, trait, "judged.parquet")

    def vector_files(self, variant: str = "{variant}", trait: str = TRAIT) -> dict[str, str]:
        """The :class:`~traitscope.core.artifacts.TraitVectors` of one trait: tensors, JSON sidecar, metrics table."""
        return {"vectors": self.path("vectors", variant, trait, "vectors.safetensors"),
                "sidecar": self.path("vectors", variant, trait, "vectors.json"),
                "metrics": self.path("vectors", variant, trait, "metrics.parquet")}

    def auc_sidecar(self, variant: str = "{variant}", trait: str = TRAIT) -> str:
        """The sidecar as extraction writes it (AUC layer choice) when ``extract.steering_layer_choice`` re-chooses
        the layer; the final sidecar is ``vector_files()["sidecar"]``."""
        return self.path("vectors", variant, trait, "vectors.auc.json")

    def layer_choice(self, variant: str = "{variant}", trait: str = TRAIT) -> dict[str, str]:
        """The judged steering sweep over a trait's candidate layers (``extract.steering_layer_choice``)."""
        return {"table": self.path("vectors", variant, trait, "layer_choice.parquet"),
                "figure": self.path("vectors", variant, trait, "layer_choice.png")}

    # ---------------------------------------------------------------- capture and project
    def _shard(self, kind: str, variant: str, pset: str, shard: object, suffix: str) -> str:
        return self.path(kind, variant, pset, f"shard-{shard}{suffix}")

    def activations(self, variant: str = "{variant}", pset: str = "{pset}", shard: object = "{shard}") -> str:
        return self._shard("activations", variant, pset, shard, ".safetensors")

    def responses(self, variant: str = "{variant}", pset: str = "{pset}", shard: object = "{shard}") -> str:
        return self._shard("activations", variant, pset, shard, ".responses.parquet")

    def stream_scores(self, variant: str = "{variant}", pset: str = "{pset}", shard: object = "{shard}") -> str:
        """Pooled scores of one shard, projected inside the capture job (``capture.stream``)."""
        return self._shard("activations", variant, pset, shard, ".scores.parquet")

    def stream_token_scores(self, variant: str = "{variant}", pset: str = "{pset}", shard: object = "{shard}") -> str:
        return self._shard("activations", variant, pset, shard, ".tokens.parquet")

    def stream_baseline(self, variant: str = "{variant}", pset: str = "{pset}", shard: object = "{shard}") -> str:
        return self._shard("activations", variant, pset, shard, ".baseline.safetensors")

    def baseline(self, variant: str = "{variant}", pset: str = "{pset}") -> str:
        """Random-direction scores of a (variant, prompt set): the control baseline of score-based AUCs
        (:class:`traitscope.core.artifacts.BaselineScores`)."""
        return self.path("projections", variant, pset, "baseline.safetensors")

    def scores(self, variant: str = "{variant}", pset: str = "{pset}") -> str:
        """Pooled trait scores of every prompt of a (variant, prompt set): id, trait, method, layer, position, score."""
        return self.path("projections", variant, pset, "scores.parquet")

    def token_scores(self, variant: str = "{variant}", pset: str = "{pset}") -> str:
        """Per-token trait scores of a (variant, prompt set): id, token_index, token_id, is_prefill, ..., score."""
        return self.path("projections", variant, pset, "tokens.parquet")

    # ---------------------------------------------------------------- SAE features
    def sae(self, layer: object = "{layer}") -> dict[str, str]:
        """A trained SAE in the SAELens folder layout, and its training report."""
        return {"config": self.path("sae", f"layer_{layer}", "cfg.json"),
                "weights": self.path("sae", f"layer_{layer}", "sae_weights.safetensors"),
                "training": self.path("sae", f"layer_{layer}", "training.json")}

    def sae_features(self, experiment: str = "{experiment}") -> dict[str, str]:
        return {"json": self.path("sae", experiment, "features.json"),
                "figure": self.path("sae", experiment, "features.png")}

    # ---------------------------------------------------------------- analyses
    def extraction_summary(self) -> dict[str, str]:
        return {"table": self.path("extract", "summary.parquet"), "figure": self.path("extract", "summary.png")}

    def harm_check(self) -> dict[str, str]:
        return {"json": self.path("checks", "harm_separation.json"), "figure": self.path("checks", "harm_separation.png")}

    def trait_scores(self) -> dict[str, str]:
        return {"table": self.path("analysis", "trait_scores.parquet"),
                "figure": self.path("analysis", "trait_scores.png")}

    def steering_sweep(self, variant: str = "{variant}", trait: str = TRAIT) -> dict[str, str]:
        return {"table": self.path("steering", variant, trait, "sweep.parquet"),
                "figure": self.path("steering", variant, trait, "sweep.png")}

    def optimized(self, variant: str = "{variant}", trait: str = TRAIT) -> dict[str, str]:
        return {"vector": self.path("optimize", variant, trait, "vector.safetensors"),
                "sidecar": self.path("optimize", variant, trait, "vector.json"),
                "history": self.path("optimize", variant, trait, "history.parquet")}

    def extraction_gap(self) -> dict[str, str]:
        return {"json": self.path("optimize", "extraction_gap.json"),
                "figure": self.path("optimize", "optimization_curves.png")}

    def organism_directions(self, ft: str) -> dict[str, str]:
        return {"directions": self.path("organism", ft, "directions.safetensors"),
                "table": self.path("organism", ft, "detection.parquet"),
                "json": self.path("organism", ft, "detection.json"),
                "figure": self.path("organism", ft, "detection_auc.png")}

    def organism_ablation(self, ft: str) -> dict[str, str]:
        return {"table": self.path("organism", ft, "ablation.parquet"),
                "markdown": self.path("organism", ft, "ablation.md"),
                "json": self.path("organism", ft, "ablation.json")}

    def backdoor(self, variant: str) -> dict[str, str]:
        return {"json": self.path("backdoor", variant, "detection_auc.json"),
                "tokens": self.path("backdoor", variant, "token_auc.parquet"),
                "comparison": self.path("backdoor", variant, "trait_comparison.png"),
                "early": self.path("backdoor", variant, "early_detection_tokens.png")}

    def variant_comparison(self) -> dict[str, str]:
        return {"json": self.path("emergent_misalignment", "variant_comparison.json"),
                "scores": self.path("emergent_misalignment", "per_question_scores.parquet"),
                "figure": self.path("emergent_misalignment", "figures", "trait_distributions.png")}

    def external(self, dataset: str = "{dataset}") -> dict[str, str]:
        return {"json": self.path("external", dataset, "results.json"),
                "table": self.path("external", dataset, "per_category.parquet"),
                "scores": self.path("external", dataset, "scores.parquet"),
                "failures": self.path("external", dataset, "failure_cases.json"),
                "figure": self.path("external", dataset, "per_category_auc.png")}

    def prefill_attack(self) -> dict[str, str]:
        return {"json": self.path("prefill_attack", "condition_comparison.json"),
                "scores": self.path("prefill_attack", "window_scores.parquet"),
                "trajectory": self.path("prefill_attack", "trajectory.parquet"),
                "grid": self.path("prefill_attack", "2x2_grid.png"),
                "divergence": self.path("prefill_attack", "trajectory_divergence.png")}

    def viewer(self) -> dict[str, str]:
        return {"page": self.path("viewer", "tokens.html")}

    def findings(self) -> dict[str, str]:
        """Each experiment's finding beside its control (:mod:`traitscope.findings`), and the report's front page."""
        return {"markdown": self.path("findings.md"), "json": self.path("findings.json"),
                "front": self.path("report", "front.rst")}

    def manifest(self) -> str:
        return self.path("all")

    # ---------------------------------------------------------------- caches and logs
    def cache(self, kind: str) -> str:
        """Resumable work of one kind: capture chunks, finetune checkpoints, CMA-ES state, judge answers."""
        return self.path("cache", kind)

    def log(self, rule: str, *wildcards: str) -> str:
        """``logs/<rule>/<wildcard>/.../<last>.log``; without wildcards ``logs/<rule>.log``."""
        if not wildcards:
            return self.path("logs", f"{rule}.log")
        return self.path("logs", rule, *wildcards[:-1], f"{wildcards[-1]}.log")
