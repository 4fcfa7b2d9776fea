"""Analysis and figures of the optimize experiment (the experiment itself: ``__init__``)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from sklearn.decomposition import PCA

from ...core.io import read_json, write_json
from ...core.methods import unit
from ...core.progress import Progress
from ...core.sweep import SteeringTask

if TYPE_CHECKING:
    pass


def split_prompts(prompts: list[str], seed: int) -> tuple[list[str], list[str]]:
    order = np.random.default_rng(seed).permutation(len(prompts))
    half = len(prompts) // 2
    return [prompts[i] for i in order[:half]], [prompts[i] for i in order[half:]]


def pca_basis(x: np.ndarray, k: int, seed: int) -> np.ndarray:
    k = max(1, min(k, x.shape[0] - 1, x.shape[1]))
    return PCA(n_components=k, random_state=seed).fit(x).components_.astype(np.float32)


def optimise(
    task: SteeringTask,
    v0: torch.Tensor,
    basis: np.ndarray,
    *,
    coef: float,
    population: int,
    iterations: int,
    sigma0: float,
    seed: int,
    checkpoint: str | Path,
) -> dict[str, Any]:
    """CMA-ES over ``z``; returns the best vector, the history and the baseline.

    Beside it, the control at the same evaluation budget: random search, ``population x iterations`` candidates
    drawn from CMA-ES's own starting distribution (``z ~ N(0, sigma0^2 I)``, never adapted), judged on the same
    training prompts. The history's ``search`` column tells them apart; the best vector is CMA-ES's. Both are
    checkpointed, so a killed job resumes where it stopped."""
    import cma

    u0 = unit(v0).numpy()
    B = basis

    def vector(z: np.ndarray) -> torch.Tensor:
        v = u0 + B.T @ np.asarray(z, dtype=np.float32)
        return torch.from_numpy(v / np.linalg.norm(v))

    train, _ = split_prompts(task.prompts, seed)
    baseline = float(task.evaluate(None, 0, train)["trait_score"].mean())
    state = read_json(checkpoint) if Path(checkpoint).exists() else {"generations": []}
    es = cma.CMAEvolutionStrategy(
        np.zeros(B.shape[0]), sigma0, {"popsize": population, "seed": seed, "verbose": -9, "maxiter": iterations}
    )
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
            state["generations"].append(
                {"generation": gen, "candidates": [list(map(float, z)) for z in xs], "fitness": fitness}
            )
            write_json(checkpoint, state)
        es.tell(xs, [-f for f in fitness])  # cma minimises
        progress.update(
            1, note=f"best fitness so far {max(f for g in state['generations'] for f in g['fitness']):+.2f}"
        )
    # the control: random search with the same budget, batched like CMA-ES's generations
    draws = np.random.default_rng([seed, 1]).normal(0.0, sigma0, (iterations, population, B.shape[0]))
    done_random = state.setdefault("random_search", [])
    for gen in range(len(done_random), iterations):
        fitness = [float(task.evaluate(vector(z), coef, train)["trait_score"].mean()) - baseline for z in draws[gen]]
        done_random.append({"generation": gen, "fitness": fitness})
        write_json(checkpoint, state)
    history = pd.DataFrame(
        [
            {"search": search, "generation": g["generation"], "candidate": i, "fitness": f}
            for search, gens in (("cma-es", state["generations"]), ("random", done_random))
            for g in gens
            for i, f in enumerate(g["fitness"])
        ]
    )
    best = max(
        ((f, z) for g in state["generations"] for f, z in zip(g["fitness"], g["candidates"])), key=lambda t: t[0]
    )
    progress.close(
        f"{iterations} generations of {population}, best trait change {best[0]:+.2f} over baseline {baseline:.1f}"
    )
    return {
        "vector": vector(np.array(best[1])),
        "z": best[1],
        "train_delta": best[0],
        "baseline_train": baseline,
        "history": history,
    }


def extraction_gap(task: SteeringTask, v0: torch.Tensor, v_opt: torch.Tensor, coef: float, seed: int) -> dict[str, Any]:
    """Cosine of the two vectors and the judged steering delta of each, on train and held-out prompts."""
    train, held = split_prompts(task.prompts, seed)
    out: dict[str, Any] = {"cosine": float(torch.nn.functional.cosine_similarity(v0.float(), v_opt.float(), dim=0))}
    for name, prompts in (("train", train), ("heldout", held)):
        base = task.evaluate(None, 0, prompts)
        ext = task.evaluate(v0, coef, prompts)
        opt = task.evaluate(v_opt, coef, prompts)
        out[name] = {
            "n_prompts": len(prompts),
            "baseline_trait": float(base["trait_score"].mean()),
            "extracted_delta": float(ext["trait_score"].mean() - base["trait_score"].mean()),
            "optimised_delta": float(opt["trait_score"].mean() - base["trait_score"].mean()),
            "extracted_coherence": float(ext["coherence"].mean()),
            "optimised_coherence": float(opt["coherence"].mean()),
            "judge_tokens": int(
                sum(d[["prompt_tokens", "completion_tokens"]].to_numpy().sum() for d in (base, ext, opt))
            ),
        }
    return out


# ---------------------------------------------------------------------------------------------- figures


def optimization_curves(history: pd.DataFrame, judge_kind: str, n_train: dict[str, int]) -> plt.Figure:
    """CMA-ES fitness per generation (best so far and population mean), one panel per trait, beside random search at
    the same evaluation budget (best so far, dashed grey: the control) where the history has it."""
    traits = sorted(history["trait"].unique())
    fig, axes = plt.subplots(1, len(traits), figsize=(max(7.5, 5.5 * len(traits)), 4.4), squeeze=False)
    search = history["search"] if "search" in history else pd.Series("cma-es", index=history.index)
    for ax, trait in zip(axes.flat, traits):
        h = history[(history["trait"] == trait) & (search == "cma-es")]
        per_gen = h.groupby("generation")["fitness"].agg(["mean", "max"]).reset_index()
        per_gen["best so far"] = per_gen["max"].cummax()
        ax.plot(per_gen["generation"], per_gen["best so far"], marker="o", label="CMA-ES best so far")
        ax.plot(per_gen["generation"], per_gen["mean"], marker="s", ls="--", label="CMA-ES population mean")
        r = history[(history["trait"] == trait) & (search == "random")]
        verdict = ""
        if len(r):
            best_random = r.groupby("generation")["fitness"].max().cummax()
            ax.plot(
                best_random.index,
                best_random.to_numpy(),
                marker="x",
                ls="--",
                color="0.45",
                label=f"random search best so far (same budget, n={len(r)})",
            )
            cma_best, rand_best = float(per_gen["best so far"].iloc[-1]), float(best_random.iloc[-1])
            verdict = f"\nbest {cma_best:+.1f} vs random search {rand_best:+.1f}: " + (
                "CMA-ES found more" if cma_best > rand_best else "no better than random search"
            )
        ax.axhline(0, color="grey", lw=0.8)
        pop = int(h.groupby("generation").size().max())
        ax.set_title(f"{trait} (population {pop}, n={n_train[trait]} training prompts){verdict}", fontsize=10)
        ax.set_xlabel("CMA-ES generation (random search: batch of the same size)")
        ax.set_xticks(per_gen["generation"].tolist())
        ax.set_ylabel("judged trait change vs unsteered\n(points on the 0-100 scale)")
        ax.legend(fontsize=7)
    fig.suptitle(f"Steering-vector optimisation on training prompts\n(judge: {judge_kind})", fontsize=10)
    fig.tight_layout()
    return fig
