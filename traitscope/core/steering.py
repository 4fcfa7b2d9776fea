"""Steering and directional ablation by forward hooks, also under ``generate()`` with a KV cache.

``Steer``     adds ``coef * v / ||v||`` to the residual stream after block ``layer`` (the same layer
              convention as capture) at ``positions``: ``all``, ``prompt`` or ``response``; with ``site`` ``attn``
              or ``mlp``, to that block's attention or MLP output instead (what the block adds to the stream).
``Ablate``    removes ``strength`` times the component along ``v / ||v||``:  h - strength (h . u) u.

Under ``generate()`` the first forward pass sees the (left-padded) prompt and each later pass one new
token; the hooks count the positions they have seen since ``reset()``, so ``prompt`` means the
``prompt_len`` first positions and ``response`` everything after them. Call ``reset(prompt_len)``
before each ``generate()`` (``generate_steered`` does).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from .architecture import site_module
from .methods import unit
from .specs import Generation

POSITIONS = ("all", "prompt", "response")
BATCH_SIZE = 8
"""Prompts generated together under steering (every steered generation: sweeps, CMA-ES, layer choice, ablation)."""


class _Edit:
    def __init__(self, model: nn.Module, layer: int, vector: torch.Tensor, positions: str, site: str = "resid"):
        if positions not in POSITIONS:
            raise ValueError(f"positions must be one of {POSITIONS}, not {positions!r}")
        self.model, self.layer, self.positions, self.site = model, int(layer), positions, site
        self.u = unit(vector.detach())
        self.prompt_len: int | None = None
        self.seen = 0
        self._handle: Any = None

    def reset(self, prompt_len: int | None = None) -> None:
        self.prompt_len, self.seen = prompt_len, 0

    def _mask(self, h: torch.Tensor) -> torch.Tensor | None:
        """[1, T, 1] mask of positions to edit in this call, or None for all."""
        t = h.shape[1]
        start, self.seen = self.seen, self.seen + t
        if self.positions == "all":
            return None
        if self.prompt_len is None:
            raise RuntimeError("call reset(prompt_len) before steering prompt or response positions")
        pos = torch.arange(start, start + t, device=h.device)
        keep = pos < self.prompt_len if self.positions == "prompt" else pos >= self.prompt_len
        return keep.view(1, t, 1).to(h.dtype)

    def edit(self, h: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def _hook(self, _module: nn.Module, _inputs: Any, output: Any) -> Any:
        h = output[0] if isinstance(output, tuple) else output
        new = self.edit(h, self._mask(h))
        return (new, *output[1:]) if isinstance(output, tuple) else new

    def __enter__(self):
        self._handle = site_module(self.model, self.layer, self.site).register_forward_hook(self._hook)
        self.reset(self.prompt_len)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None


class Steer(_Edit):
    """Add ``coef`` x the unit vector at ``layer`` (and ``site``)."""

    def __init__(
        self,
        model: nn.Module,
        layer: int,
        vector: torch.Tensor,
        coef: float,
        positions: str = "all",
        site: str = "resid",
    ):
        super().__init__(model, layer, vector, positions, site)
        self.coef = float(coef)

    def edit(self, h: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        delta = (self.coef * self.u).to(h.device, h.dtype)
        return h + (delta if mask is None else mask * delta)


class Ablate(_Edit):
    """Remove ``strength`` x the projection on the unit vector at ``layer`` (1 = full directional ablation)."""

    def __init__(
        self,
        model: nn.Module,
        layer: int,
        vector: torch.Tensor,
        strength: float = 1.0,
        positions: str = "all",
        site: str = "resid",
    ):
        super().__init__(model, layer, vector, positions, site)
        self.strength = float(strength)

    def edit(self, h: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        u = self.u.to(h.device, h.dtype)
        proj = (h @ u).unsqueeze(-1) * u
        return h - self.strength * (proj if mask is None else mask * proj)


def generate_steered(
    model: nn.Module,
    tokenizer: Any,
    prompts: Sequence[str],
    edits: Sequence[_Edit],
    *,
    max_new_tokens: int,
    systems: Sequence[str | None] | None = None,
    batch_size: int = BATCH_SIZE,
    do_sample: bool = False,
    seed: int = 0,
) -> list[str]:
    """Greedy (or sampled) responses to ``prompts`` with every edit in ``edits`` active."""
    from .chat import Encoded, prompt_token_ids
    from .generation import generate_responses

    systems = list(systems) if systems is not None else [None] * len(prompts)
    out: list[str] = []
    for start in range(0, len(prompts), batch_size):
        batch = [
            Encoded(prompt_token_ids(tokenizer, p, s), [], [])
            for p, s in zip(prompts[start : start + batch_size], systems[start : start + batch_size])
        ]
        generation = Generation(
            enabled=True, max_new_tokens=max_new_tokens, do_sample=do_sample, temperature=1.0, top_p=1.0
        )

        def reset(width: int) -> None:  # left padding: every row's prompt ends at `width`
            for e in edits:
                e.reset(width)

        ids = generate_responses(model, tokenizer, batch, generation, len(batch), seed=seed + start, before_batch=reset)
        out += [tokenizer.decode(i, skip_special_tokens=True) for i in ids]
    return out
