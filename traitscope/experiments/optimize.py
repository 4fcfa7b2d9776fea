"""Steering evaluation and CMA-ES optimisation of steering vectors against a judge.

Coefficients are given in units of the mean activation norm at the layer (``coef x mean ||h||``), at the trait's
site (the residual stream, or the attention or MLP output a site vector is added to), so one setting means the same
across layers and models.

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

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from sklearn.decomposition import PCA

from ..core.artifacts import ActivationShard, TraitVectors
from ..core.io import read_json, write_json
from ..core.judge import Judge
from ..core.methods import unit
from ..core.progress import Progress
from ..core.steering import Steer, generate_steered
from ..workflow.settings import JudgeSettings, ModelSpec


@dataclass
class SteeringTask:
    """Everything needed to judge steered responses for one trait."""

    model: Any
    tokenizer: Any
    judge: Judge
    trait: str
    description: str
    layer: int
    prompts: list[str]
    norm: float  # mean activation norm at the layer (and site): the coefficient unit
    max_new_tokens: int = 24
    positions: str = "all"
    batch_size: int = 8
    seed: int = 0
    site: str = "resid"  # where the vector is added: the residual stream after the block, or its attn/mlp output

    def evaluate(self, vector: torch.Tensor | None, coef: float, prompts: list[str] | None = None) -> pd.DataFrame:
        """Responses and judged scores with ``vector`` added at ``coef x norm`` (None or 0: unsteered)."""
        prompts = self.prompts if prompts is None else prompts
        with contextlib.ExitStack() as stack:
            edits = [] if vector is None or coef == 0 else [
                stack.enter_context(Steer(self.model, self.layer, vector, coef * self.norm, self.positions,
                                          self.site))]
            responses = generate_steered(self.model, self.tokenizer, prompts, edits, max_new_tokens=self.max_new_tokens,
                                         batch_size=self.batch_size, seed=self.seed)
        scores = self.judge.score([{"question": q, "answer": a, "trait": self.trait, "description": self.description}
                                   for q, a in zip(prompts, responses)])
        return pd.concat([pd.DataFrame({"prompt": prompts, "response": responses}), scores], axis=1)


def mean_norm(x: np.ndarray) -> float:
    return float(np.linalg.norm(x, axis=1).mean())


def split_prompts(prompts: list[str], seed: int) -> tuple[list[str], list[str]]:
    order = np.random.default_rng(seed).permutation(len(prompts))
    half = len(prompts) // 2
    return [prompts[i] for i in order[:half]], [prompts[i] for i in order[half:]]


def sweep(task: SteeringTask, vectors: dict[int, torch.Tensor], norms: dict[int, float],
          coefficients: list[float]) -> pd.DataFrame:
    """Judged trait score and coherence for every (layer, coefficient)."""
    rows = []
    progress = Progress(f"steering {task.trait}", len(vectors) * len(coefficients), "settings (layer x coefficient)")
    for layer, v in vectors.items():
        t = SteeringTask(**{**task.__dict__, "layer": layer, "norm": norms[layer]})
        for coef in coefficients:
            rows.append(t.evaluate(v, coef).assign(layer=layer, coef=coef))
            progress.update(1, note=f"layer {layer}, coefficient {coef}: trait {rows[-1]['trait_score'].mean():.1f}")
    table = pd.concat(rows, ignore_index=True)
    progress.close(f"{len(table)} steered responses judged at {len(vectors)} layer(s) x {len(coefficients)} coefficients")
    return table


def pca_basis(x: np.ndarray, k: int, seed: int) -> np.ndarray:
    k = max(1, min(k, x.shape[0] - 1, x.shape[1]))
    return PCA(n_components=k, random_state=seed).fit(x).components_.astype(np.float32)


def optimise(task: SteeringTask, v0: torch.Tensor, basis: np.ndarray, *, coef: float, population: int, iterations: int,
             sigma0: float, seed: int, checkpoint: str | Path) -> dict[str, Any]:
    """CMA-ES over ``z``; returns the best vector, the history and the baseline."""
    import cma

    u0 = unit(v0).numpy()
    B = basis

    def vector(z: np.ndarray) -> torch.Tensor:
        v = u0 + B.T @ np.asarray(z, dtype=np.float32)
        return torch.from_numpy(v / np.linalg.norm(v))

    train, _ = split_prompts(task.prompts, seed)
    baseline = float(task.evaluate(None, 0, train)["trait_score"].mean())
    state = read_json(checkpoint) if Path(checkpoint).exists() else {"generations": []}
    es = cma.CMAEvolutionStrategy(np.zeros(B.shape[0]), sigma0,
                                  {"popsize": population, "seed": seed, "verbose": -9, "maxiter": iterations})
    progress = Progress(f"CMA-ES {task.trait}", iterations, "generations")
    for gen in range(iterations):
        xs = es.ask()
        if gen < len(state["generations"]):
            done = state["generations"][gen]
            if not np.allclose(np.array(done["candidates"]), np.array(xs), atol=1e-6):
                raise RuntimeError(f"checkpoint {checkpoint} does not match this run's settings; delete it to restart")
            fitness = [float("nan") if f is None else f for f in done["fitness"]]  # JSON stores NaN as null
        else:
            fitness = [float(task.evaluate(vector(z), coef, train)["trait_score"].mean()) - baseline for z in xs]
            state["generations"].append({"generation": gen, "candidates": [list(map(float, z)) for z in xs],
                                         "fitness": fitness})
            write_json(checkpoint, state)
        es.tell(xs, [-f for f in fitness])  # cma minimises
        progress.update(1, note=f"best fitness so far {max(f for g in state['generations'] for f in g['fitness']):+.2f}")
    history = pd.DataFrame([{"generation": g["generation"], "candidate": i, "fitness": f}
                            for g in state["generations"] for i, f in enumerate(g["fitness"])])
    best = max(((f, z) for g in state["generations"] for f, z in zip(g["fitness"], g["candidates"])), key=lambda t: t[0])
    progress.close(f"{iterations} generations of {population}, best trait change {best[0]:+.2f} over baseline {baseline:.1f}")
    return {"vector": vector(np.array(best[1])), "z": best[1], "train_delta": best[0], "baseline_train": baseline,
            "history": history}


def extraction_gap(task: SteeringTask, v0: torch.Tensor, v_opt: torch.Tensor, coef: float, seed: int) -> dict[str, Any]:
    """Cosine of the two vectors and the judged steering delta of each, on train and held-out prompts."""
    train, held = split_prompts(task.prompts, seed)
    out: dict[str, Any] = {"cosine": float(torch.nn.functional.cosine_similarity(v0.float(), v_opt.float(), dim=0))}
    for name, prompts in (("train", train), ("heldout", held)):
        base = task.evaluate(None, 0, prompts)
        ext = task.evaluate(v0, coef, prompts)
        opt = task.evaluate(v_opt, coef, prompts)
        out[name] = {"n_prompts": len(prompts), "baseline_trait": float(base["trait_score"].mean()),
                     "extracted_delta": float(ext["trait_score"].mean() - base["trait_score"].mean()),
                     "optimised_delta": float(opt["trait_score"].mean() - base["trait_score"].mean()),
                     "extracted_coherence": float(ext["coherence"].mean()),
                     "optimised_coherence": float(opt["coherence"].mean()),
                     "judge_tokens": int(sum(d[["prompt_tokens", "completion_tokens"]].to_numpy().sum()
                                             for d in (base, ext, opt)))}
    return out


def build_task(*, variant: ModelSpec, judge_cfg: JudgeSettings, judge_cache: str | Path, trait: str,
               description: str, prompts: list[str], layer: int, norm: float, max_new_tokens: int,
               positions: str = "all", seed: int = 0, site: str = "resid") -> SteeringTask:
    """Load the model and the judge for a steering job (used by the workflow scripts)."""
    from ..core.models import load_model

    model, tokenizer = load_model(variant, key="variant")
    judge = Judge.from_config(judge_cfg, judge_cache)
    return SteeringTask(model=model, tokenizer=tokenizer, judge=judge, trait=trait, description=description,
                        layer=layer, prompts=prompts, norm=norm, max_new_tokens=max_new_tokens, positions=positions,
                        seed=seed, site=site)


def trait_norms(activations: str | Path, vectors: TraitVectors, layers: list[int]) -> dict[int, float]:
    """:func:`layer_norms` of a trait's contrastive capture at ``layers``, at the trait's position and site (the
    coefficient unit of steering with its vectors); reads only those tensors."""
    shard = ActivationShard.load_at(activations, vectors.position, layers, vectors.site)
    return layer_norms(shard, vectors.position, layers, vectors.site)


def layer_norms(shard: ActivationShard, position: str, layers: list[int], site: str = "resid") -> dict[int, float]:
    """Mean activation norm per layer over the trait's contrastive activations, at ``site`` (the residual stream, or
    the attention or MLP output that a site vector is added to)."""
    out = {}
    for layer in layers:
        x, ok = shard.pooled(position, layer, site)
        out[layer] = mean_norm(x[ok])
    return out
