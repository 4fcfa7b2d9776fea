"""Judged steering: steered answers to a set of prompts, scored by the judge, over layers and coefficients.

Coefficients are given in units of the mean activation norm at the layer (``coef x mean ||h||``), at the trait's
site (the residual stream, or the attention or MLP output a site vector is added to), so one setting means the same
across layers and models. Used by the layer choice of extraction (``extract.steering_layer_choice``), the steering
sweep and the CMA-ES optimisation.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from .artifacts import ActivationShard, TraitVectors
from .judge import Judge
from .progress import Progress
from .specs import JudgeSettings, ModelSpec
from .steering import BATCH_SIZE, Steer, generate_steered


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
    batch_size: int = BATCH_SIZE
    seed: int = 0
    site: str = "resid"  # where the vector is added: the residual stream after the block, or its attn/mlp output

    def evaluate(self, vector: torch.Tensor | None, coef: float, prompts: list[str] | None = None) -> pd.DataFrame:
        """Responses and judged scores with ``vector`` added at ``coef x norm`` (None or 0: unsteered)."""
        prompts = self.prompts if prompts is None else prompts
        with contextlib.ExitStack() as stack:
            edits = (
                []
                if vector is None or coef == 0
                else [
                    stack.enter_context(
                        Steer(self.model, self.layer, vector, coef * self.norm, self.positions, self.site)
                    )
                ]
            )
            responses = generate_steered(
                self.model,
                self.tokenizer,
                prompts,
                edits,
                max_new_tokens=self.max_new_tokens,
                batch_size=self.batch_size,
                seed=self.seed,
            )
        scores = self.judge.score(
            [
                {"question": q, "answer": a, "trait": self.trait, "description": self.description}
                for q, a in zip(prompts, responses)
            ]
        )
        return pd.concat([pd.DataFrame({"prompt": prompts, "response": responses}), scores], axis=1)


def mean_norm(x: np.ndarray) -> float:
    return float(np.linalg.norm(x, axis=1).mean())


def sweep(
    task: SteeringTask, vectors: dict[int, torch.Tensor], norms: dict[int, float], coefficients: list[float]
) -> pd.DataFrame:
    """Judged trait score and coherence for every (layer, coefficient)."""
    rows = []
    progress = Progress(f"steering {task.trait}", len(vectors) * len(coefficients), "settings (layer x coefficient)")
    for layer, v in vectors.items():
        t = SteeringTask(**{**task.__dict__, "layer": layer, "norm": norms[layer]})
        for coef in coefficients:
            rows.append(t.evaluate(v, coef).assign(layer=layer, coef=coef))
            progress.update(1, note=f"layer {layer}, coefficient {coef}: trait {rows[-1]['trait_score'].mean():.1f}")
    table = pd.concat(rows, ignore_index=True)
    progress.close(
        f"{len(table)} steered responses judged at {len(vectors)} layer(s) x {len(coefficients)} coefficients"
    )
    return table


def same_norm_random(vector: torch.Tensor, seed: int) -> torch.Tensor:
    """A seeded random direction with ``vector``'s norm, dtype and device: the control of a steering effect (added at
    the same coefficient it moves the activations by as much, in no trait's direction)."""
    from .methods import random_directions

    r = torch.from_numpy(random_directions(1, vector.numel(), seed)[0]).to(vector.device, torch.float64)
    return (r * vector.double().norm()).to(vector.dtype).reshape(vector.shape)


def build_task(
    *,
    variant: ModelSpec,
    judge_cfg: JudgeSettings,
    judge_cache: str | Path,
    trait: str,
    description: str,
    prompts: list[str],
    layer: int,
    norm: float,
    max_new_tokens: int,
    positions: str = "all",
    seed: int = 0,
    site: str = "resid",
) -> SteeringTask:
    """Load the model and the judge for a steering job (used by the workflow scripts)."""
    from .models import load_model

    model, tokenizer = load_model(variant, key="variant")
    judge = Judge.from_config(judge_cfg, judge_cache)
    return SteeringTask(
        model=model,
        tokenizer=tokenizer,
        judge=judge,
        trait=trait,
        description=description,
        layer=layer,
        prompts=prompts,
        norm=norm,
        max_new_tokens=max_new_tokens,
        positions=positions,
        seed=seed,
        site=site,
    )


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
