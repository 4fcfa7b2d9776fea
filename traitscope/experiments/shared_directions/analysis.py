"""Analysis and figures of the shared-directions experiment (the experiment itself: ``__init__``)."""

from __future__ import annotations

import contextlib
import hashlib
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch

from ...core.artifacts import tensor_key
from ...core.methods import unit
from ...core.stats import paired_comparison

OWN = "own"


# ---------------------------------------------------------------------------------------------- directions


def _aligned(
    base: tuple[list[str], dict[int, np.ndarray]], other: tuple[list[str], dict[int, np.ndarray]]
) -> tuple[np.ndarray, np.ndarray]:
    """Row indices of the prompts both hold, in the base's order."""
    where = {i: k for k, i in enumerate(other[0])}
    common = [(k, where[i]) for k, i in enumerate(base[0]) if i in where]
    if len(common) < 4:
        raise ValueError(f"the base and an organism share {len(common)} prompt ids (need 4); capture both on one set")
    return np.array([k for k, _ in common]), np.array([j for _, j in common])


def fit_directions(
    base: tuple[list[str], dict[int, np.ndarray]],
    organisms: dict[str, tuple[list[str], dict[int, np.ndarray]]],
    layers: list[int],
    seed: int,
) -> tuple[dict[str, dict[int, np.ndarray]], dict[str, dict[int, float]], int]:
    """Each organism's direction per layer (mean organism minus mean base activation, on the prompts both hold), its
    split-half reliability (the cosine of the directions fitted on two random halves of those prompts) and the
    number of prompts."""
    dirs: dict[str, dict[int, np.ndarray]] = {}
    reliability: dict[str, dict[int, float]] = {}
    n = 0
    for name, acts in organisms.items():
        ib, io = _aligned(base, acts)
        n = len(ib)
        half = np.random.default_rng(seed).permutation(n)
        h1, h2 = half[: n // 2], half[n // 2 :]
        dirs[name], reliability[name] = {}, {}
        for layer in layers:
            xb, xo = base[1][layer][ib].astype(np.float64), acts[1][layer][io].astype(np.float64)
            dirs[name][layer] = (xo.mean(0) - xb.mean(0)).astype(np.float32)
            d1, d2 = xo[h1].mean(0) - xb[h1].mean(0), xo[h2].mean(0) - xb[h2].mean(0)
            reliability[name][layer] = cosine(d1, d2)
    return dirs, reliability, n


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    denom = np.linalg.norm(a) * np.linalg.norm(b)
    return float(a @ b / denom) if denom > 0 else float("nan")


def random_cosine_p95(hidden: int, n_random: int, seed: int) -> float:
    """The 95th percentile of |cosine| between ``n_random`` pairs of random unit directions in ``hidden`` dims."""
    rng = np.random.default_rng(seed)
    a, b = rng.standard_normal((2, n_random, hidden))
    cos = np.abs((a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)))
    return float(np.percentile(cos, 95))


def cosine_table(
    dirs: dict[str, dict[int, np.ndarray]], organisms: list[str], controls: list[str], random_p95: float
) -> pd.DataFrame:
    """Every pair of directions per layer: kind ``organisms`` (two organisms) or ``control`` (an organism or
    control with a control), its cosine, and whether it is above the random 95th percentile."""
    names = [*organisms, *controls]
    rows = []
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            kind = "organisms" if a in organisms and b in organisms else "control"
            for layer in sorted(dirs[a]):
                c = cosine(dirs[a][layer], dirs[b][layer])
                rows.append(
                    {
                        "layer": layer,
                        "a": a,
                        "b": b,
                        "kind": kind,
                        "cosine": c,
                        "random_p95": random_p95,
                        "beats_random": bool(c > random_p95),
                    }
                )
    return pd.DataFrame(rows)


def choose_layer(table: pd.DataFrame, setting: Any) -> dict[str, Any]:
    """``setting`` (a layer) or "best": the layer of the largest mean cosine between organisms; earlier on ties."""
    mean = table[table["kind"] == "organisms"].groupby("layer")["cosine"].mean()
    if setting == "best":
        ordered = mean.sort_index()
        layer = int(ordered.index[int(np.argmax(ordered.to_numpy()))])
        criterion = "largest mean cosine between organisms (controls left out)"
    else:
        layer, criterion = int(setting), "configured"
    return {
        "layer": layer,
        "criterion": criterion,
        "mean_cosine": float(mean.loc[layer]),
        "random_p95": float(table["random_p95"].iloc[0]),
    }


def direction_tensors(dirs: dict[str, dict[int, np.ndarray]]) -> dict[str, torch.Tensor]:
    return {
        f"{name}.{tensor_key('mean_diff', layer)}": torch.from_numpy(v)
        for name, d in dirs.items()
        for layer, v in d.items()
    }


def direction(tensors: dict[str, torch.Tensor], name: str, layer: int) -> torch.Tensor:
    return tensors[f"{name}.{tensor_key('mean_diff', layer)}"]


def random_direction(hidden: int, seed: int, label: str) -> torch.Tensor:
    """A random unit direction, fixed by the seed and a label (one per organism it stands beside)."""
    salt = int.from_bytes(hashlib.sha256(label.encode("utf-8")).digest()[:8], "little")
    rng = np.random.default_rng([seed, salt])
    return unit(torch.from_numpy(rng.standard_normal(hidden).astype(np.float32)))


# ---------------------------------------------------------------------------------------------- answers


def conditions(
    model_name: str,
    base: str,
    finetuned: list[str],
    tensors: dict[str, torch.Tensor],
    layer: int,
    coefficient: float,
    seed: int,
) -> list[tuple[str, str, str, torch.Tensor | None, float]]:
    """(condition, direction, edit, vector, coefficient) of one model: its own answers, then for an organism each
    direction ablated and a random one; for the base each direction added (``coefficient`` x its norm) and a random
    direction of the same norm."""
    hidden = int(next(iter(tensors.values())).shape[-1])
    out: list[tuple[str, str, str, torch.Tensor | None, float]] = [(OWN, "", "", None, 0.0)]
    if model_name == base:
        for name in finetuned:
            vec = direction(tensors, name, layer)
            norm = float(vec.norm())
            out.append((f"steer {name}", name, "steer", vec, coefficient * norm))
            out.append(
                (
                    f"steer random@{name}",
                    f"random@{name}",
                    "steer",
                    random_direction(hidden, seed, name),
                    coefficient * norm,
                )
            )
    else:
        for name in finetuned:
            out.append((f"ablate {name}", name, "ablate", direction(tensors, name, layer), 1.0))
        out.append(("ablate random", "random", "ablate", random_direction(hidden, seed, "ablate"), 1.0))
    return out


def generate_answers(
    model: Any,
    tokenizer: Any,
    prompts: pd.DataFrame,
    plan: list[tuple[str, str, str, torch.Tensor | None, float]],
    layer: int,
    *,
    max_new_tokens: int,
    seed: int,
) -> pd.DataFrame:
    """Greedy answers of ``model`` to ``prompts`` under every condition of ``plan`` (one row per prompt and
    condition)."""
    from ...core.steering import Ablate, Steer, generate_steered

    texts = prompts["prompt"].tolist()
    frames = []
    for cond, name, edit, vec, coef in plan:
        with contextlib.ExitStack() as stack:
            edits = []
            if vec is not None and edit == "ablate":
                edits.append(stack.enter_context(Ablate(model, layer, vec, 1.0)))
            elif vec is not None and edit == "steer":
                edits.append(stack.enter_context(Steer(model, layer, vec, coef)))
            answers = generate_steered(model, tokenizer, texts, edits, max_new_tokens=max_new_tokens, seed=seed)
        frames.append(
            pd.DataFrame(
                {
                    "condition": cond,
                    "direction": name,
                    "edit": edit,
                    "coefficient": coef,
                    "id": prompts["id"].tolist(),
                    "prompt": texts,
                    "response": answers,
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


# ---------------------------------------------------------------------------------------------- transfer


def _scores(answers: pd.DataFrame, condition: str) -> pd.Series:
    return answers[answers["condition"] == condition].set_index("id")["trait_score"]


def _cell(answers: pd.DataFrame, condition: str, control: str, *, n_boot: int, seed: int) -> dict[str, Any]:
    """``condition`` against the model's own answers and against ``control`` (the random direction), paired per
    prompt."""
    own, got, rnd = _scores(answers, OWN), _scores(answers, condition), _scores(answers, control)
    ids = [i for i in own.index if i in got.index and i in rnd.index]
    vs_own = paired_comparison(got.loc[ids].to_numpy(), own.loc[ids].to_numpy(), n_boot=n_boot, seed=seed)
    vs_random = paired_comparison(got.loc[ids].to_numpy(), rnd.loc[ids].to_numpy(), n_boot=n_boot, seed=seed)
    return {
        "n": len(ids),
        "own": float(own.loc[ids].mean()),
        "score": float(got.loc[ids].mean()),
        "change": vs_own["mean_difference"],
        "ci_low": vs_own["ci_low"],
        "ci_high": vs_own["ci_high"],
        "random_change": float((rnd.loc[ids] - own.loc[ids]).mean()),
        "minus_random": vs_random["mean_difference"],
        "minus_random_ci": [vs_random["ci_low"], vs_random["ci_high"]],
        "minus_random_p": vs_random["p"],
    }


def transfer(
    answers: dict[str, pd.DataFrame], base: str, finetuned: list[str], *, n_boot: int, seed: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The transfer matrix (each direction ablated in each finetuned model; beats random when the paired 95% CI of
    ablated minus random-ablated misalignment lies below 0) and the base steering (each direction added; beats random
    when the CI of steered minus random-steered lies above 0)."""
    cells = []
    for model in finetuned:
        for name in finetuned:
            c = _cell(answers[model], f"ablate {name}", "ablate random", n_boot=n_boot, seed=seed)
            cells.append({"model": model, "direction": name, **c, "beats_random": bool(c["minus_random_ci"][1] < 0)})
    steering = []
    for name in finetuned:
        c = _cell(answers[base], f"steer {name}", f"steer random@{name}", n_boot=n_boot, seed=seed)
        steering.append({"direction": name, **c, "beats_random": bool(c["minus_random_ci"][0] > 0)})
    return cells, steering


# ---------------------------------------------------------------------------------------------- figures and tables


def cosines_figure(
    table: pd.DataFrame, reliability: dict[str, dict[int, float]], chosen: dict[str, Any], names: list[str], title: str
) -> plt.Figure:
    """Left: the cosine matrix at the chosen layer (diagonal: split-half reliability). Right: each pair's cosine per
    layer beside the random 95th percentile and the reliabilities."""
    layer = chosen["layer"]
    at = table[table["layer"] == layer]
    m = pd.DataFrame(np.nan, index=names, columns=names)
    for r in at.itertuples():
        m.loc[r.a, r.b] = m.loc[r.b, r.a] = r.cosine
    for name in names:
        m.loc[name, name] = reliability[name][layer]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12.5, 4.6), gridspec_kw={"width_ratios": [1, 1.4]})
    sns.heatmap(
        m.astype(float), annot=True, fmt=".2f", vmin=-1, vmax=1, cmap="vlag", ax=ax1, cbar_kws={"label": "cosine"}
    )
    ax1.set_title(f"Layer {layer}: cosine of the directions\n(diagonal: split-half reliability)", fontsize=10)
    for (a, b), d in table.groupby(["a", "b"]):
        d = d.sort_values("layer")
        kind = d["kind"].iloc[0]
        ax2.plot(
            d["layer"],
            d["cosine"],
            marker="o",
            ms=3,
            ls="-" if kind == "organisms" else "--",
            label=f"{a} ~ {b} ({kind})",
        )
    for name in names:
        rel = pd.Series(reliability[name]).sort_index()
        ax2.plot(rel.index, rel.values, ls=":", lw=1, label=f"{name}: split halves")
    ax2.axhline(chosen["random_p95"], color="black", ls="--", lw=1.2, label="random directions, |cos| 95th pct")
    ax2.axhline(0, color="black", lw=0.5)
    ax2.axvline(layer, color="grey", ls="--", lw=1)
    ax2.set_xlabel("layer (residual stream after block)")
    ax2.set_ylabel("cosine between directions")
    ax2.set_ylim(-1, 1.02)
    ax2.legend(fontsize=7, loc="lower left")
    ax2.set_title(f"Per layer (dashed grey: layer {layer}, {chosen['criterion']})", fontsize=10)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def transfer_figure(
    cells: list[dict[str, Any]], steering: list[dict[str, Any]], base: str, n: int, title: str
) -> plt.Figure:
    """Left: change in judged misalignment when each direction (column) is ablated in each model (row), beside a
    random direction. Right: the base model steered with each direction and with a random one of the same norm."""
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12.5, 4.6))
    df = pd.DataFrame(cells)
    order = list(dict.fromkeys(df["model"]))  # the configured order: organisms, then controls
    m = df.pivot(index="model", columns="direction", values="change").reindex(index=order, columns=order)
    m["random"] = df.groupby("model")["random_change"].first().reindex(order)
    sns.heatmap(
        m.astype(float),
        annot=True,
        fmt=".1f",
        center=0,
        cmap="vlag",
        ax=ax1,
        cbar_kws={"label": "change in judged misalignment (0-100 points)"},
    )
    for i, model in enumerate(m.index):
        for j, name in enumerate(m.columns[:-1]):
            if df[(df["model"] == model) & (df["direction"] == name)]["beats_random"].any():
                ax1.text(j + 0.85, i + 0.25, "*", fontsize=14, ha="center")
    ax1.set_xlabel("direction ablated")
    ax1.set_ylabel("model answering")
    ax1.set_title(
        f"Ablation: change against the model's own answers (n={n} prompts)\n* below random, paired 95% CI", fontsize=10
    )
    s = pd.DataFrame(steering)
    x = np.arange(len(s))
    for off, col, lo, hi, label in (
        (-0.2, "change", "ci_low", "ci_high", "organism direction"),
        (0.2, "random_change", None, None, "random direction, same norm"),
    ):
        err = None if lo is None else np.abs(np.vstack([s[col] - s[lo], s[hi] - s[col]]).astype(float))
        ax2.bar(x + off, s[col], width=0.4, yerr=err, capsize=3, label=label)
    ax2.axhline(0, color="black", lw=0.5)
    ax2.set_xticks(x, s["direction"])
    ax2.set_xlabel("direction added to the base model")
    ax2.set_ylabel("change in judged misalignment (0-100 points)")
    ax2.set_title(f"Steering '{base}' (n={n} prompts, 95% CI)", fontsize=10)
    ax2.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def answers_markdown(answers: dict[str, pd.DataFrame], heading: str, width: int = 160) -> str:
    """Every model's answers per prompt and condition, with the judged score."""

    def cell(value: Any) -> str:
        text = str(value).replace("|", "\\|").replace("\n", " ")
        return text if len(text) <= width else text[: width - 1] + "…"

    lines = [f"# {heading}", ""]
    for model, df in answers.items():
        lines += [f"## {model}", "", "| prompt | condition | judged | answer |", "|---|---|---|---|"]
        for r in df.sort_values(["id", "condition"], kind="stable").itertuples():
            lines.append(f"| {cell(r.prompt)} | {r.condition} | {r.trait_score:.0f} | {cell(r.response)} |")
        lines.append("")
    return "\n".join(lines)
