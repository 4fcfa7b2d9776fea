"""The results layout: every path of the core stages, spelled once (each experiment spells its own, under
``results/<name>/``, in its module: :meth:`Experiment.folder <traitscope.workflow.experiment.Experiment.folder>`).

Each method returns a path (or a dict of named paths for an artifact made of several files). Called
without arguments it returns the Snakemake pattern with wildcards (``{variant}``, ``{pset}``, ``{shard}``,
``{category}/{trait}``, ``{ft}``, ``{step}``, ``{dataset}``); with arguments, the concrete path.

::

    results/
      prompts/<set>.parquet, prompts/traits/<category>/<trait>.parquet        prep
      finetune/<name>/{train.jsonl.gz, adapter/, loss.parquet, loss.png}       finetune
      finetune/<name>/checkpoints/step-<k>/adapter/                          finetune_checkpoint
      extract/<variant>/<category>/<trait>/activations.safetensors            extract (model job)
      vectors/<variant>/<category>/<trait>/vectors.{safetensors,json}         extract (TraitVectors)
        (vectors.auc.json, layer_choice.{parquet,png} with extract.steering_layer_choice)
      activations/<variant>/<set>/shard-<i>.safetensors                       capture (ActivationShard)
      activations/<variant>/<set>/shard-<i>.{scores,tokens}.parquet           capture, capture.stream sets
        (and shard-<i>.baseline.safetensors)
      projections/<variant>/<set>/{scores,tokens}.parquet                     project (one job per set)
      projections/<variant>/<set>/baseline.safetensors                        project (BaselineScores)
      extract/summary, analysis/, viewer/, findings.{md,json}                analyze
      <experiment>/ (or a folder it names)                                     each experiment's rules
      cache/{capture,finetune,judge,<experiment>}/, logs/<rule>/...            resumable work, logs
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

    @staticmethod
    def core_names() -> frozenset[str]:
        """The names the core's paths take directly under a results folder (``activations``, ``vectors``, ``all``,
        ...), read from this class's own path methods: an experiment's results folder may not take one."""
        import inspect

        lay = Layout("R")
        names: set[str] = set()
        for attr, method in inspect.getmembers(lay, inspect.ismethod):
            if attr.startswith("_") or attr in ("core_names", "foreign_target", "path"):
                continue
            required = [
                p
                for p in inspect.signature(method).parameters.values()
                if p.default is inspect.Parameter.empty and p.kind is p.POSITIONAL_OR_KEYWORD
            ]
            out = method(*["x"] * len(required))
            for value in out.values() if isinstance(out, dict) else [out]:
                if str(value).startswith("R/"):
                    names.add(str(value).split("/")[1])
        return frozenset(names)

    def foreign_target(self, targets: object) -> str | None:
        """A one-line error for the first target file outside this study's results and resources folders (asking for
        ``results/all`` of a study whose ``results_dir`` is ``out``), or None. Rule names (``all``) pass."""
        roots = [posixpath.normpath(r) for r in (self.root, self.resources)]
        for target in sorted(str(t) for t in (targets or ())):  # type: ignore[attr-defined]
            norm = posixpath.normpath(target)
            if "/" not in norm or any(norm == r or norm.startswith(r + "/") for r in roots):
                continue
            name = norm.split("/", 1)[1] if norm.count("/") else norm
            return (
                f"target '{target}' is outside this study's results folder '{self.root}' (results_dir) (fix: ask "
                f"for {posixpath.join(self.root, name)}, or name the rule: snakemake all)"
            )
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

    def checkpoint_adapter(self, ft: str = "{ft}", step: object = "{step}") -> str:
        """The adapter of finetune ``ft`` after ``step`` optimizer steps (finetune.<ft>.checkpoints)."""
        return self.path("finetune", ft, "checkpoints", f"step-{step}", "adapter")

    def finetune_files(self, ft: str = "{ft}") -> dict[str, str]:
        return {"history": self.path("finetune", ft, "loss.parquet"), "figure": self.path("finetune", ft, "loss.png")}

    # ---------------------------------------------------------------- extract
    def trait_capture(self, variant: str = "{variant}", trait: str = TRAIT) -> dict[str, str]:
        return {
            "activations": self.path("extract", variant, trait, "activations.safetensors"),
            "responses": self.path("extract", variant, trait, "responses.parquet"),
        }

    def trait_judged(self, variant: str = "{variant}", trait: str = TRAIT) -> str:
        """Judge scores of a persona trait's generated answers, with each row's keep/drop decision."""
        return self.path("extract", variant, trait, "judged.parquet")

    def vector_files(self, variant: str = "{variant}", trait: str = TRAIT) -> dict[str, str]:
        """The :class:`~traitscope.core.artifacts.TraitVectors` of one trait: tensors, JSON sidecar, metrics table."""
        return {
            "vectors": self.path("vectors", variant, trait, "vectors.safetensors"),
            "sidecar": self.path("vectors", variant, trait, "vectors.json"),
            "metrics": self.path("vectors", variant, trait, "metrics.parquet"),
        }

    def auc_sidecar(self, variant: str = "{variant}", trait: str = TRAIT) -> str:
        """The sidecar as extraction writes it (AUC layer choice) when ``extract.steering_layer_choice`` re-chooses
        the layer; the final sidecar is ``vector_files()["sidecar"]``."""
        return self.path("vectors", variant, trait, "vectors.auc.json")

    def layer_choice(self, variant: str = "{variant}", trait: str = TRAIT) -> dict[str, str]:
        """The judged steering sweep over a trait's candidate layers (``extract.steering_layer_choice``)."""
        return {
            "table": self.path("vectors", variant, trait, "layer_choice.parquet"),
            "figure": self.path("vectors", variant, trait, "layer_choice.png"),
        }

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

    def extraction_summary(self) -> dict[str, str]:
        return {
            "table": self.path("extract", "summary.parquet"),
            "table_html": self.path("extract", "summary.html"),
            "figure": self.path("extract", "summary.png"),
        }

    def trait_scores(self) -> dict[str, str]:
        return {
            "table": self.path("analysis", "trait_scores.parquet"),
            "table_html": self.path("analysis", "trait_scores.html"),
            "figure": self.path("analysis", "trait_scores.png"),
        }

    def viewer(self) -> dict[str, str]:
        return {"page": self.path("viewer", "tokens.html")}

    def findings(self) -> dict[str, str]:
        """Each experiment's finding beside its control (:mod:`traitscope.findings`), and the report's front page."""
        return {
            "markdown": self.path("findings.md"),
            "json": self.path("findings.json"),
            "front": self.path("report", "front.rst"),
        }

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

    def benchmark(self, rule: str, *wildcards: str, root: str | None = None) -> str:
        """Snakemake's measurement of one job (wall seconds, max RSS, I/O, CPU time: a one-row TSV), beside its log:
        ``benchmarks/<rule>/<wildcard>/.../<last>.tsv`` under the results folder (``root="resources"``: under the
        resources folder, for the conversions there). :mod:`traitscope.measure` sums them per rule."""
        base = self.resources if root == "resources" else self.root
        if not wildcards:
            return posixpath.join(base, "benchmarks", f"{rule}.tsv")
        return posixpath.join(base, "benchmarks", rule, *wildcards[:-1], f"{wildcards[-1]}.tsv")
