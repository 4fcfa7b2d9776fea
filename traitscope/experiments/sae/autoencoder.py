"""Sparse autoencoders in the SAELens format: load one (a local folder or the hub), or train a top-k SAE.

A SAELens SAE is a folder with ``cfg.json`` (``d_in``, ``d_sae``, ``architecture``, ``hook_name``, ...) and
``sae_weights.safetensors`` holding ``W_enc [d_in, d_sae]``, ``b_enc [d_sae]``, ``W_dec [d_sae, d_in]`` and
``b_dec [d_in]`` (and ``threshold [d_sae]`` for JumpReLU). Encoding, with ``x' = x - b_dec`` when
``apply_b_dec_to_input`` (else ``x``) and ``pre = x' @ W_enc + b_enc``:

``standard``  ``relu(pre)``
``topk``      ``relu(pre)`` with all but the ``k`` largest entries per row set to 0
``jumprelu``  ``pre`` where ``pre > threshold``, else 0

Gemma Scope's layout loads too: a folder (or the file itself) with ``params.npz`` holding the same five arrays, a
JumpReLU SAE that encodes ``x`` without subtracting ``b_dec`` (read with ``allow_pickle=False``: no code runs).

Decoding is ``f @ W_dec + b_dec``. Training (:func:`train_topk`) minimises the reconstruction MSE of a top-k SAE
with Adam, decoder rows kept at unit norm, on a seeded shuffle of the rows; a held-out share of the rows gives the
reported fraction of variance unexplained and the share of dead features (never active on held-out rows).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ...core.io import read_safetensors, write_json, write_safetensors
from ...core.progress import Progress
from .sources import CONFIG, GEMMA_SCOPE, WEIGHTS, SAEError, resolve_source

__all__ = ["SAEError", "SparseAutoencoder", "resolve_source", "train_topk"]

ARCHITECTURES = ("standard", "topk", "jumprelu")


@dataclass
class SparseAutoencoder:
    W_enc: torch.Tensor
    b_enc: torch.Tensor
    W_dec: torch.Tensor
    b_dec: torch.Tensor
    architecture: str = "topk"
    k: int | None = None
    threshold: torch.Tensor | None = None
    apply_b_dec_to_input: bool = True
    cfg: dict[str, Any] = field(default_factory=dict)

    @property
    def d_in(self) -> int:
        return int(self.W_enc.shape[0])

    @property
    def d_sae(self) -> int:
        return int(self.W_enc.shape[1])

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Feature activations ``[n, d_sae]`` (float32) of rows ``x [n, d_in]``."""
        x = x.float()
        pre = (x - self.b_dec if self.apply_b_dec_to_input else x) @ self.W_enc + self.b_enc
        if self.architecture == "jumprelu":
            assert self.threshold is not None
            return pre * (pre > self.threshold)
        acts = torch.relu(pre)
        if self.architecture == "topk":
            k = min(int(self.k or self.d_sae), self.d_sae)
            top = acts.topk(k, dim=-1)
            acts = torch.zeros_like(acts).scatter_(-1, top.indices, top.values)
        return acts

    def decode(self, f: torch.Tensor) -> torch.Tensor:
        return f @ self.W_dec + self.b_dec

    def save(self, folder: str | Path) -> None:
        """The SAELens folder layout: ``cfg.json`` and ``sae_weights.safetensors``."""
        folder = Path(folder)
        tensors = {"W_enc": self.W_enc, "b_enc": self.b_enc, "W_dec": self.W_dec, "b_dec": self.b_dec}
        if self.threshold is not None:
            tensors["threshold"] = self.threshold
        write_safetensors(folder / WEIGHTS, tensors)
        cfg = {
            **self.cfg,
            "d_in": self.d_in,
            "d_sae": self.d_sae,
            "architecture": self.architecture,
            "apply_b_dec_to_input": self.apply_b_dec_to_input,
            "dtype": "float32",
        }
        if self.k is not None:
            cfg.update(k=int(self.k), activation_fn_kwargs={"k": int(self.k)})
        write_json(folder / CONFIG, cfg)

    @classmethod
    def load(cls, folder: str | Path) -> SparseAutoencoder:
        """A SAELens folder (``cfg.json`` + ``sae_weights.safetensors``) or Gemma Scope's ``params.npz`` (the
        file, or a folder holding it)."""
        folder = Path(folder)
        npz = folder if folder.suffix == ".npz" else folder / GEMMA_SCOPE
        if npz.is_file() and not (folder / WEIGHTS).is_file():
            return cls.load_gemma_scope(npz)
        if not (folder / CONFIG).is_file() or not (folder / WEIGHTS).is_file():
            raise SAEError(
                f"{folder}: not a SAELens folder (needs {CONFIG} and {WEIGHTS}) nor a Gemma Scope one (needs "
                f"{GEMMA_SCOPE}) (fix: point sae.source at the folder that holds them, or use sae.source: train)"
            )
        try:
            cfg = json.loads((folder / CONFIG).read_text())
        except json.JSONDecodeError as exc:
            raise SAEError(
                f"{folder / CONFIG}: malformed JSON at line {exc.lineno} (fix: repair or re-download the SAE)"
            ) from exc
        tensors, _ = read_safetensors(folder / WEIGHTS)
        missing = {"W_enc", "b_enc", "W_dec", "b_dec"} - set(tensors)
        if missing:
            raise SAEError(
                f"{folder / WEIGHTS} lacks {sorted(missing)} (fix: a SAELens SAE stores W_enc, b_enc, W_dec and b_dec)"
            )
        arch = str(cfg.get("architecture", "standard"))
        if arch not in ARCHITECTURES:
            raise SAEError(
                f"{folder / CONFIG}: architecture {arch!r} is not supported (fix: use one of {list(ARCHITECTURES)})"
            )
        k = cfg.get("k", (cfg.get("activation_fn_kwargs") or {}).get("k"))
        return cls(
            tensors["W_enc"].float(),
            tensors["b_enc"].float(),
            tensors["W_dec"].float(),
            tensors["b_dec"].float(),
            architecture=arch,
            k=int(k) if k is not None else None,
            threshold=tensors["threshold"].float() if "threshold" in tensors else None,
            apply_b_dec_to_input=bool(cfg.get("apply_b_dec_to_input", True)),
            cfg=cfg,
        )

    @classmethod
    def load_gemma_scope(cls, path: str | Path) -> SparseAutoencoder:
        """Gemma Scope's ``params.npz``: ``W_enc [d_in, d_sae]``, ``W_dec [d_sae, d_in]``, ``b_enc``, ``b_dec`` and
        ``threshold``, a JumpReLU SAE applied to the raw activation (no ``b_dec`` subtracted)."""
        import numpy as np

        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {k: torch.from_numpy(np.asarray(data[k], dtype=np.float32)) for k in data.files}
        except (OSError, ValueError) as exc:
            raise SAEError(f"{path}: not a readable .npz ({exc}) (fix: re-download the Gemma Scope SAE)") from exc
        missing = {"W_enc", "b_enc", "W_dec", "b_dec", "threshold"} - set(arrays)
        if missing:
            raise SAEError(
                f"{path} lacks {sorted(missing)} (fix: a Gemma Scope SAE stores W_enc, b_enc, W_dec, "
                "b_dec and threshold)"
            )
        d_in, d_sae = arrays["W_enc"].shape
        if arrays["W_dec"].shape != (d_sae, d_in) or arrays["threshold"].shape != (d_sae,):
            raise SAEError(
                f"{path}: W_enc {tuple(arrays['W_enc'].shape)} does not match W_dec "
                f"{tuple(arrays['W_dec'].shape)} and threshold {tuple(arrays['threshold'].shape)} "
                "(fix: re-download the Gemma Scope SAE)"
            )
        return cls(
            arrays["W_enc"],
            arrays["b_enc"],
            arrays["W_dec"],
            arrays["b_dec"],
            architecture="jumprelu",
            threshold=arrays["threshold"],
            apply_b_dec_to_input=False,
            cfg={"format": "gemma_scope", "source": str(path)},
        )


# ------------------------------------------------------------------------------------------------ training


def fraction_of_variance_unexplained(sae: SparseAutoencoder, x: torch.Tensor) -> float:
    """``sum ||x - decode(encode(x))||^2 / sum ||x - mean(x)||^2`` over the rows of ``x``."""
    x = x.float()
    err = (x - sae.decode(sae.encode(x))).pow(2).sum()
    return float(err / (x - x.mean(0)).pow(2).sum().clamp_min(1e-12))


def dead_share(sae: SparseAutoencoder, x: torch.Tensor) -> float:
    """Share of features that are active on none of the rows of ``x``."""
    return float(((sae.encode(x) > 0).sum(0) == 0).float().mean())


def train_topk(
    x: torch.Tensor,
    *,
    n_features: int,
    k: int,
    steps: int,
    batch_size: int,
    lr: float,
    seed: int,
    holdout: float,
    label: str = "sae",
) -> tuple[SparseAutoencoder, dict[str, Any]]:
    """A top-k SAE on the rows of ``x [n, d]`` and its held-out quality (FVU, dead share, L0)."""
    gen = torch.Generator().manual_seed(seed)
    x = x.float()
    order = torch.randperm(len(x), generator=gen)
    n_hold = max(1, int(math.ceil(holdout * len(x))))
    if len(x) - n_hold < batch_size // 4 or len(x) < 2:
        raise SAEError(
            f"{len(x)} activation rows are too few to train an SAE with batch_size {batch_size} (fix: add "
            "prompt sets to sae.corpus, or lower sae.batch_size)"
        )
    hold, train = x[order[:n_hold]], x[order[n_hold:]]
    d = x.shape[1]
    W_dec = torch.randn(n_features, d, generator=gen)
    W_dec = W_dec / W_dec.norm(dim=1, keepdim=True)
    params = {
        "W_enc": W_dec.t().clone().requires_grad_(True),
        "b_enc": torch.zeros(n_features, requires_grad=True),
        "W_dec": W_dec.clone().requires_grad_(True),
        "b_dec": train.mean(0).clone().requires_grad_(True),
    }
    opt = torch.optim.Adam(params.values(), lr=lr)
    progress = Progress(label, steps, "steps")
    losses = []
    for _ in range(steps):
        idx = torch.randint(0, len(train), (min(batch_size, len(train)),), generator=gen)
        batch = train[idx]
        sae = SparseAutoencoder(params["W_enc"], params["b_enc"], params["W_dec"], params["b_dec"], "topk", k)
        loss = (sae.decode(sae.encode(batch)) - batch).pow(2).sum(-1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            params["W_dec"] /= params["W_dec"].norm(dim=1, keepdim=True).clamp_min(1e-8)
        losses.append(float(loss.detach()))
        progress.update(1)
    final = {n: t.detach().clone() for n, t in params.items()}
    trained = SparseAutoencoder(
        final["W_enc"], final["b_enc"], final["W_dec"], final["b_dec"], architecture="topk", k=k
    )
    with torch.no_grad():
        stats = {
            "fvu_heldout": fraction_of_variance_unexplained(trained, hold),
            "fvu_train": fraction_of_variance_unexplained(trained, train),
            "dead_share_heldout": dead_share(trained, hold),
            "l0_heldout": float((trained.encode(hold) > 0).sum(1).float().mean()),
            "n_train_rows": int(len(train)),
            "n_heldout_rows": int(len(hold)),
            "final_loss": losses[-1],
            "n_features": n_features,
            "k": k,
            "steps": steps,
            "batch_size": batch_size,
            "lr": lr,
            "seed": seed,
        }
    progress.close(f"FVU {stats['fvu_heldout']:.3f} held out, {stats['dead_share_heldout']:.1%} dead features")
    return trained, stats


def corpus_rows(paths: list[str], layer: int) -> torch.Tensor:
    """Training rows at ``layer`` from activation shards: every last-token row and every response token."""
    from ...core.artifacts import ActivationShard, tensor_key
    from ...core.io import safetensors_keys

    rows = []
    for path in paths:
        keys = [k for k in (tensor_key("last", layer), tensor_key("response", layer)) if k in safetensors_keys(path)]
        shard = ActivationShard.load(path, keys)
        rows += [shard.tensors[k].float() for k in keys]
    if not rows:
        raise SAEError(
            f"no last-token or response activations at layer {layer} in {len(paths)} shards (fix: capture "
            "positions last/response at that layer)"
        )
    return torch.cat(rows)
