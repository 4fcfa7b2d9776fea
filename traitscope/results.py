"""The results of a finished study as tidy pandas frames, for notebooks: ``traitscope.open_results(results_dir)``.

    import traitscope
    res = traitscope.open_results("results")
    res.scores(trait="safety/evil")                  # one row per (variant, prompt set, prompt, trait, method, layer,
                                                     # position), with the prompt, the response, label and category
    res.token_scores("base", "harmful_eval")         # one row per response token, with its text
    res.baseline("base", "harmful_eval")             # the control: one row per prompt and random direction
    res.vectors("safety/evil").get("mean_diff", 20)  # a trait vector (torch), or res.vector("safety/evil") at the
                                                     # extraction's chosen method and layer
    res.extraction()                                 # every trait's test AUC per layer and method, with baselines
    res.experiment("prefill_attack")                 # an experiment's JSON result, as a dict

Everything is read from the files the workflow wrote (the manifest ``<results_dir>/all`` gives the study's config);
nothing is recomputed and no model is loaded, except the tokenizer that turns token ids into text. The tables and
their columns are listed in ``docs/results.md``.
"""

from __future__ import annotations

import glob
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .core.chat import token_texts
from .core.errors import TraitscopeError
from .core.io import read_parquets
from .experiments import REGISTRY
from .workflow.layout import Layout

PROMPT_COLUMNS = ["id", "prompt", "system", "prefill", "response", "label", "category", "group"]
"""What :meth:`Results.scores` joins from the prompt table: the text the model saw and the row's label/category."""


class ResultsError(TraitscopeError):
    """A results folder, or something asked of it, is missing; the message says what to run."""


class Results:
    """A finished (or partly finished) study's results folder. See the module docstring."""

    def __init__(self, results_dir: str | os.PathLike[str], workdir: str | os.PathLike[str] | None = None) -> None:
        self.root = Path(results_dir)
        if not self.root.is_dir():
            raise ResultsError(
                f"'{self.root}' is not a results folder (fix: run snakemake --cores 2 "
                f"{self.root}/all first, or pass the study's results_dir)"
            )
        self.workdir = Path(workdir) if workdir is not None else self.root.parent
        self.layout = Layout(str(self.root), str(self.workdir / "resources"))
        manifest = self.root / "all"
        self.manifest: dict[str, Any] = json.loads(manifest.read_text()) if manifest.is_file() else {}
        self.config: dict[str, Any] = self.manifest.get("config") or {}
        self._tokenizers: dict[str, Any] = {}

    def __repr__(self) -> str:
        return f"Results({str(self.root)!r}: {len(self.pairs())} projected (variant, prompt set) pairs)"

    # ------------------------------------------------------------------------------------------------ discovery
    def pairs(self) -> list[tuple[str, str]]:
        """(variant, prompt set) of every projection table on disk."""
        return sorted(
            (p.parent.parent.name, p.parent.name) for p in (self.root / "projections").glob("*/*/scores.parquet")
        )

    def traits(self) -> list[str]:
        """Traits with extracted vectors (``category/name``)."""
        return sorted(
            {f"{p.parent.parent.name}/{p.parent.name}" for p in (self.root / "vectors").glob("*/*/*/vectors.json")}
        )

    def experiments(self) -> dict[str, Path]:
        """Every experiment result on disk by name, as each registered experiment declares them
        (:meth:`~traitscope.workflow.experiment.Experiment.results`): its name for one result, or
        ``<name>/<variant, dataset, finetune, comparison or trait>`` for one result of several."""
        found: dict[str, Path] = {}
        for experiment in REGISTRY:
            for name, pattern in experiment.results().items():
                for f in sorted(self.root.glob(pattern)):  # {0}: the result's folder, {1}: the one above, ...
                    found[name.format(*(q.name for q in f.parents))] = f
        return found

    def figures(self) -> list[Path]:
        """Every figure the study wrote."""
        return sorted(p for p in self.root.rglob("*.png") if "cache" not in p.relative_to(self.root).parts)

    # ------------------------------------------------------------------------------------------------ tables
    def prompts(self, prompt_set: str) -> pd.DataFrame:
        """A prompt set as the model saw it (``results/prompts/<set>.parquet``)."""
        return _read(self.layout.prompts(prompt_set), f"prompt set {prompt_set!r}")

    def responses(self, variant: str, prompt_set: str) -> pd.DataFrame:
        """What each prompt's assistant turn was (generated, replayed or given), one row per prompt, all shards."""
        files = sorted(glob.glob(self.layout.responses(variant, prompt_set, "*")))  # every shard's table
        if not files:
            raise ResultsError(
                f"no responses of {variant} on {prompt_set} in {self.root} (fix: check "
                f"capture.variants/prompt_sets; pairs on disk: {self.pairs()[:6]})"
            )
        return read_parquets(files)

    def scores(
        self,
        variant: str | None = None,
        prompt_set: str | None = None,
        *,
        trait: str | None = None,
        method: str | None = None,
        layer: int | None = None,
        position: str | None = None,
    ) -> pd.DataFrame:
        """Pooled trait scores, tidy: ``variant, prompt_set, id, trait, method, layer, position, score`` plus the
        prompt's text, response (``response``: the assistant turn scored, generated or given), ``label``,
        ``category`` and ``group``. Every argument left None means all."""
        frames, seen = [], []
        wanted = {"trait": trait, "method": method, "layer": layer, "position": position}
        for v, s in self.pairs():
            if (variant and v != variant) or (prompt_set and s != prompt_set):
                continue
            df = pd.read_parquet(self.layout.scores(v, s))
            seen.append(df)
            frames.append(self._joined(_where(df, **wanted), v, s))
        if not frames:
            raise ResultsError(
                f"no scores for variant={variant} prompt_set={prompt_set} in {self.root} (pairs on "
                f"disk: {self.pairs()[:8]})"
            )
        out = pd.concat(frames, ignore_index=True)
        if out.empty:
            _explain_empty(seen, wanted, f"scores of variant={variant} prompt_set={prompt_set}")
        return out

    def token_scores(
        self,
        variant: str,
        prompt_set: str,
        *,
        trait: str | None = None,
        method: str | None = None,
        layer: int | None = None,
    ) -> pd.DataFrame:
        """Per-token scores of a (variant, prompt set): ``id, token_index, token_id, token, is_prefill, trait, method,
        layer, score`` (``token``: the token's text, decoded by the variant's tokenizer), with the prompt columns
        joined. Empty where ``project.per_token`` is off."""
        path = Path(self.layout.token_scores(variant, prompt_set))
        whole = _read(path, f"token scores of {variant} on {prompt_set}")
        wanted = {"trait": trait, "method": method, "layer": layer}
        df = _where(whole, **wanted)
        if df.empty and not whole.empty:
            _explain_empty([whole], wanted, f"token scores of {variant} on {prompt_set}")
        if len(df):
            tok = self.tokenizer(variant)
            text: dict[tuple[str, int], str] = {}
            if tok is not None:  # each prompt's tokens decoded in sequence (token_texts: no U+FFFD halves)
                first = df.drop_duplicates(["id", "token_index"]).sort_values(["id", "token_index"], kind="stable")
                for i, g in first.groupby("id", sort=False):
                    keys = [(str(i), int(k)) for k in g["token_index"]]
                    text.update(zip(keys, token_texts(tok, g["token_id"])))
            df.insert(
                list(df.columns).index("token_id") + 1,
                "token",
                [text.get((str(i), int(k))) for i, k in zip(df["id"], df["token_index"])],
            )
        return self._joined(df, variant, prompt_set, response=False)

    def baseline(
        self, variant: str, prompt_set: str, *, layer: int | None = None, position: str | None = None
    ) -> pd.DataFrame:
        """The random-direction control of a (variant, prompt set), tidy: ``variant, prompt_set, id, position, site,
        layer, direction, score`` (one row per prompt and seeded random unit direction at each projected layer and
        pooled position; direction ``r`` at layer ``L`` is the same in every prompt set). What every score-based
        verdict is compared with: ``scores(...)`` beside ``baseline(...)``."""
        from .core.architecture import SITES
        from .core.artifacts import BaselineScores, tensor_key
        from .core.project import POOLED

        path = Path(self.layout.baseline(variant, prompt_set))
        if not path.is_file():
            raise ResultsError(
                f"no random-direction baseline of {variant} on {prompt_set} in {self.root} (fix: project.random_directions "
                f"must be above 0; pairs on disk: {self.pairs()[:6]})"
            )
        base = BaselineScores.load(path)
        frames = []
        layers = sorted(int(x) for x in base.meta.get("layers", []))
        for at, pos, site in (
            (at, pos, site)
            for at in layers
            for pos in POOLED
            for site in SITES
            if tensor_key(pos, at, site) in base.tensors
            and (position is None or pos == position)
            and (layer is None or at == layer)
        ):
            scores = base.pooled(at, pos, site)
            n, r = scores.shape
            frames.append(
                pd.DataFrame(
                    {
                        "id": np.repeat(base.ids, r),
                        "position": pos,
                        "site": site,
                        "layer": at,
                        "direction": np.tile(np.arange(r), n),
                        "score": scores.reshape(-1),
                    }
                )
            )
        if not frames:
            raise ResultsError(
                f"no random-direction scores of {variant} on {prompt_set} at layer={layer} position={position} (fix: "
                f"use a projected layer {layers} and a pooled position)"
            )
        df = pd.concat(frames, ignore_index=True)
        df.insert(0, "prompt_set", prompt_set)
        df.insert(0, "variant", variant)
        return df

    def extraction(self) -> pd.DataFrame:
        """Test AUC, Cohen's d, accuracy and the random-direction baseline of every trait, layer and method
        (``extract/summary.parquet``)."""
        return _read(self.layout.extraction_summary()["table"], "the extraction summary")

    def vectors(self, trait: str, variant: str | None = None) -> Any:
        """The :class:`~traitscope.core.artifacts.TraitVectors` of a trait (``.get(method, layer)``, ``.best_layer``,
        ``.info`` with its baselines)."""
        from .core.artifacts import TraitVectors

        files = self._vector_files(trait, variant)
        return TraitVectors.load(files["vectors"], files["sidecar"])

    def vector_info(self, trait: str, variant: str | None = None) -> Any:
        """A trait's :class:`~traitscope.core.artifacts.TraitVectors` without its tensors: the sidecar (``.info``,
        ``.best_layer``, ``.site``) alone."""
        from .core.artifacts import TraitVectors

        return TraitVectors.load_info(self._vector_files(trait, variant)["sidecar"])

    def _vector_files(self, trait: str, variant: str | None) -> dict[str, str]:
        variant = (
            variant
            or (self.config.get("extract") or {}).get("variant")
            or _only([p.name for p in (self.root / "vectors").glob("*") if p.is_dir()], "extraction variant")
        )
        files = self.layout.vector_files(variant, trait)
        if not Path(files["vectors"]).is_file():
            raise ResultsError(f"no vectors of trait {trait!r} from {variant} in {self.root} (traits: {self.traits()})")
        return files

    def vector(
        self, trait: str, method: str | None = None, layer: int | None = None, variant: str | None = None
    ) -> Any:
        """One trait vector as a float32 tensor; the extraction's chosen method and layer by default, from
        ``variant``'s extraction (default: ``extract.variant``)."""
        tv = self.vectors(trait, variant)
        return tv.get(method or tv.best_method, tv.best_layer if layer is None else layer)

    def experiment(self, name: str) -> dict[str, Any]:
        """An experiment's JSON result (:meth:`experiments` lists the names)."""
        return dict(json.loads(self._result(name).read_text()))

    def experiment_tables(self, name: str) -> list[str]:
        """The tables an experiment result wrote beside its JSON (the parquet files of its folder, by stem)."""
        return _tables_in(self._result(name).parent)

    def experiment_table(self, name: str, table: str) -> pd.DataFrame:
        """One of an experiment's tables as a tidy frame, with the result's name in an ``experiment`` column:
        ``res.experiment_table("backdoor/backdoored", "token_auc")`` (the per-token AUCs beside their random
        control), ``res.experiment_table("external/advbench", "per_category")``. Every column is described in
        ``docs/results.md``; :meth:`experiment_tables` lists a result's tables."""
        folder = self._result(name).parent
        tables = _tables_in(folder)
        if table not in tables:
            raise ResultsError(f"result {name!r} has no table {table!r} (fix: use one of {tables})")
        df = pd.read_parquet(folder / f"{table}.parquet")
        df.insert(0, "experiment", name)
        return df

    def _result(self, name: str) -> Path:
        """The JSON file of result ``name``, or a one-line error listing the results on disk."""
        found = self.experiments()
        if name not in found:
            raise ResultsError(f"no result {name!r} in {self.root} (fix: use one of {sorted(found)})")
        return found[name]

    # ------------------------------------------------------------------------------------------------ helpers
    def tokenizer(self, variant: str) -> Any:
        """The variant's tokenizer (for token text), or None when its model cannot be found from here."""
        if variant not in self._tokenizers:
            from .core.models import load_tokenizer
            from .workflow.config import entry

            spec = (self.config.get("variants") or {}).get(variant)
            try:
                self._tokenizers[variant] = (
                    load_tokenizer(entry("variants", spec), resources_dir=self.workdir / "resources") if spec else None
                )
            except TraitscopeError:
                self._tokenizers[variant] = None
        return self._tokenizers[variant]

    def _joined(self, df: pd.DataFrame, variant: str, prompt_set: str, response: bool = True) -> pd.DataFrame:
        df = df.copy()
        df.insert(0, "prompt_set", prompt_set)
        df.insert(0, "variant", variant)
        df["id"] = df["id"].astype(str)
        prompts = Path(self.layout.prompts(prompt_set))
        if prompts.is_file():
            table = pd.read_parquet(prompts)
            table = table[[c for c in PROMPT_COLUMNS if c in table.columns]].assign(id=lambda t: t["id"].astype(str))
            if response:
                try:
                    scored = self.responses(variant, prompt_set)[["id", "response"]].astype({"id": str})
                    table = table.drop(columns="response").merge(scored, on="id", how="left")
                except ResultsError:
                    pass
            df = df.merge(table, on="id", how="left")
        return df


def open_results(
    results_dir: str | os.PathLike[str] = "results", workdir: str | os.PathLike[str] | None = None
) -> Results:
    """Open a study's results folder (see :mod:`traitscope.results`). ``workdir``: the folder the study ran in
    (where ``resources/`` is), by default the results folder's parent."""
    return Results(results_dir, workdir)


def _read(path: str | Path, what: str) -> pd.DataFrame:
    if not Path(path).is_file():
        raise ResultsError(
            f"{what} is not in the results ('{path}' is missing; fix: run the study, or name that "
            "file as a snakemake target)"
        )
    return pd.read_parquet(path)


def _where(df: pd.DataFrame, **equal: Any) -> pd.DataFrame:
    for column, value in equal.items():
        if value is not None:
            df = df[df[column] == value]
    return df.reset_index(drop=True)


def _explain_empty(frames: list[pd.DataFrame], wanted: dict[str, Any], what: str) -> None:
    """Raise a one-line :class:`ResultsError` naming the filter whose value no row has (a trait's short name gets
    its full one suggested), instead of returning an empty frame."""
    for column, value in wanted.items():
        if value is None:
            continue
        present = sorted({x for df in frames if column in df for x in df[column].dropna().unique().tolist()}, key=str)
        if value not in present:
            close = [p for p in present if isinstance(p, str) and p.split("/")[-1] == value]
            fix = f"did you mean {close[0]!r}?" if close else f"use one of {present[:12]}"
            raise ResultsError(f"no {what} with {column}={value!r} (fix: {fix})")
    raise ResultsError(
        f"no {what} with {', '.join(f'{k}={v!r}' for k, v in wanted.items() if v is not None)} together (fix: each "
        "exists, but not in one row: a trait is projected at its chosen layer and its neighbours unless project.layers says otherwise)"
    )


def _only(values: Iterable[str], what: str) -> str:
    found = sorted(values)
    if len(found) != 1:
        raise ResultsError(f"cannot tell the {what} ({found or 'none'}) (fix: name it)")
    return found[0]


def _tables_in(folder: Path) -> list[str]:
    """The tables an experiment result wrote beside its JSON: the parquet files of its folder, by stem."""
    return sorted(f.stem for f in folder.glob("*.parquet"))
