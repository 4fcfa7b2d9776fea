"""Forward hooks on decoder blocks and their attention and MLP sublayers.

Layer ``i`` means the residual stream *after* decoder block ``i`` (0-based), which equals
``hidden_states[i + 1]`` of ``output_hidden_states=True`` for every block but the last (there
Hugging Face applies the final norm; the hook sees the un-normed residual stream). At site ``attn`` or
``mlp`` (:func:`traitscope.core.architecture.site_module`) layer ``i`` means the output of block ``i``'s attention or MLP
sublayer: what that sublayer adds to the residual stream.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Self

import torch
from torch import nn

from .architecture import decoder_layers, site_module

Reducer = Callable[[int, torch.Tensor], Any]


class StopForward(Exception):
    """Raised by the hook on the deepest requested layer to skip the rest of the network."""


def _hidden(output: Any) -> torch.Tensor:
    return output[0] if isinstance(output, tuple) else output


class SiteCapture:
    """Context manager that records ``sites`` (``resid``, ``attn``, ``mlp``: :data:`traitscope.core.architecture.SITES`) of
    decoder blocks ``layers`` during forward passes.

    ``reduce(site, layer, hidden)`` is called inside the hook with the site's output ``[batch, seq, d]`` and its
    return value is stored in ``self.outputs[(site, layer)]``; reducing there (picking positions, moving to CPU) keeps
    memory flat however many layers are captured. With ``stop=True`` the forward pass stops at the end of the deepest
    requested block: use :meth:`run`, which catches it.
    """

    def __init__(
        self,
        model: nn.Module,
        layers: Sequence[int],
        sites: Sequence[str] = ("resid",),
        reduce: Callable[[str, int, torch.Tensor], Any] | None = None,
        stop: bool = False,
    ):
        self.model = model
        self.layers = sorted(set(int(layer) for layer in layers))
        self.sites = tuple(dict.fromkeys(sites))
        self.reduce = reduce or (lambda _site, _layer, h: h)
        self.stop = stop
        self.outputs: dict[tuple[str, int], Any] = {}
        self._handles: list[Any] = []

    def _make_hook(self, site: str, layer: int) -> Callable[..., None]:
        def hook(_module: nn.Module, _inputs: Any, output: Any) -> None:
            self.outputs[(site, layer)] = self.reduce(site, layer, _hidden(output))

        return hook

    @staticmethod
    def _stop_hook(_module: nn.Module, _inputs: Any, _output: Any) -> None:
        raise StopForward

    def __enter__(self) -> Self:
        for layer in self.layers:
            for site in self.sites:
                module = site_module(self.model, layer, site)
                self._handles.append(module.register_forward_hook(self._make_hook(site, layer)))
        if self.stop:  # after the capture hooks, so the deepest block's own output is recorded first
            last = decoder_layers(self.model)[self.layers[-1]]
            self._handles.append(last.register_forward_hook(self._stop_hook))
        return self

    def __exit__(self, *exc: Any) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def run(self, **inputs: Any) -> dict[tuple[str, int], Any]:
        """Run the model once (no grad, no KV cache) and return ``{(site, layer): reduced output}``."""
        self.outputs = {}
        with torch.no_grad():
            try:
                self.model(**inputs, use_cache=False)
            except StopForward:
                pass
        return self.outputs


class ResidualCapture(SiteCapture):
    """:class:`SiteCapture` of the residual stream only, keyed by layer: ``reduce(layer, hidden)``."""

    def __init__(self, model: nn.Module, layers: Sequence[int], reduce: Reducer | None = None, stop: bool = False):
        per_layer: Reducer = reduce or (lambda _layer, h: h)
        super().__init__(model, layers, ("resid",), lambda _site, layer, h: per_layer(layer, h), stop)

    def forward(self, **inputs: Any) -> dict[int, Any]:
        """Run the model once (no grad, no KV cache) and return ``{layer: reduced output}``."""
        return {layer: v for (_site, layer), v in self.run(**inputs).items()}
