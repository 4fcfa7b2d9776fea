"""Forward hooks on decoder blocks.

Layer ``i`` means the residual stream *after* decoder block ``i`` (0-based), which equals
``hidden_states[i + 1]`` of ``output_hidden_states=True`` for every block but the last (there
Hugging Face applies the final norm; the hook sees the un-normed residual stream).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from .models import decoder_layers

Reducer = Callable[[int, torch.Tensor], Any]


class StopForward(Exception):
    """Raised by the hook on the deepest requested layer to skip the rest of the network."""


def _hidden(output: Any) -> torch.Tensor:
    return output[0] if isinstance(output, tuple) else output


class ResidualCapture:
    """Context manager that records the residual stream at ``layers`` during forward passes.

    ``reduce(layer, hidden)`` is called inside the hook with the block output ``[batch, seq, d]``
    and its return value is stored in ``self.outputs[layer]``; reducing there (picking positions,
    moving to CPU) keeps memory flat however many layers are captured. With ``stop=True`` the
    forward pass stops after the deepest requested layer: use :meth:`forward`, which catches it.
    """

    def __init__(self, model: nn.Module, layers: Sequence[int], reduce: Reducer | None = None, stop: bool = False):
        self.model = model
        self.layers = sorted(set(int(layer) for layer in layers))
        self.reduce: Reducer = reduce or (lambda _layer, h: h)
        self.stop = stop
        self.outputs: dict[int, Any] = {}
        self._handles: list[Any] = []

    def _make_hook(self, layer: int) -> Callable[..., None]:
        last = layer == self.layers[-1]

        def hook(_module: nn.Module, _inputs: Any, output: Any) -> None:
            self.outputs[layer] = self.reduce(layer, _hidden(output))
            if self.stop and last:
                raise StopForward

        return hook

    def __enter__(self) -> ResidualCapture:
        blocks = decoder_layers(self.model)
        for layer in self.layers:
            self._handles.append(blocks[layer].register_forward_hook(self._make_hook(layer)))
        return self

    def __exit__(self, *exc: Any) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def forward(self, **inputs: Any) -> dict[int, Any]:
        """Run the model once (no grad, no KV cache) and return ``{layer: reduced output}``."""
        self.outputs = {}
        with torch.no_grad():
            try:
                self.model(**inputs, use_cache=False)
            except StopForward:
                pass
        return self.outputs
