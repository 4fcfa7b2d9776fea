"""Adapter probing on planted LoRA updates: exact singular values, the residual-stream side and layer of each module,
and the random-direction control."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from traitscope.experiments.adapter_probe import analysis as ap

D, R = 16, 2


def unit(seed: int) -> torch.Tensor:
    v = torch.randn(D, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return v / v.norm()


def write_adapter(folder: Path, updates: dict[str, tuple[torch.Tensor, torch.Tensor]], alpha: float = 4.0) -> Path:
    """A PEFT LoRA folder with lora_A [R, d_in] and lora_B [d_out, R] per module name."""
    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text(json.dumps({"r": R, "lora_alpha": alpha, "use_rslora": False}))
    tensors = {}
    for name, (b, a) in updates.items():
        tensors[f"base_model.model.model.layers.{name}.lora_A.weight"] = a.float().contiguous()
        tensors[f"base_model.model.model.layers.{name}.lora_B.weight"] = b.float().contiguous()
    save_file(tensors, str(folder / "adapter_model.safetensors"))
    return folder


def test_planted_directions_are_found_on_the_stream_side_at_the_layer_the_module_touches(tmp_path: Path) -> None:
    writes, reads, other = unit(1), unit(2), unit(3)
    # o_proj of block 1 writes along `writes` (its output side); q_proj of block 1 reads along `reads` (its input side)
    o_b, o_a = torch.stack([writes * 3, other], 1), torch.stack([unit(4), unit(5) * 0.1])
    q_b, q_a = torch.stack([unit(6), unit(7)], 1), torch.stack([reads * 2, other * 0.01])
    folder = write_adapter(
        tmp_path / "adapter",
        {"1.self_attn.o_proj": (o_b, o_a), "1.self_attn.q_proj": (q_b, q_a), "0.self_attn.q_proj": (q_b, q_a)},
    )
    updates = ap.lora_updates(folder)
    assert sorted(updates) == [(0, "q_proj"), (1, "o_proj"), (1, "q_proj")]
    scale = 4.0 / R
    torch.testing.assert_close(updates[(1, "o_proj")], scale * (o_b.float().double() @ o_a.float().double()))

    refs = {"t/writes": {1: writes.numpy()}, "t/reads": {0: reads.numpy()}}
    cells = ap.probe(updates, refs, top_k=1, n_random=200, seed=0)
    by = {(r.module, r.block, r.reference): r for r in cells.itertuples()}
    # block 0's reader reads the embeddings: no reference there
    assert set(by) == {("o_proj", 1, "t/writes"), ("q_proj", 1, "t/reads")}
    o, q = by[("o_proj", 1, "t/writes")], by[("q_proj", 1, "t/reads")]
    assert (o.side, o.stream_layer, q.side, q.stream_layer) == ("writes", 1, "reads", 0)
    assert o.cos == pytest.approx(abs(float(np.linalg.svd(updates[(1, "o_proj")].numpy())[0][:, 0] @ writes.numpy())))
    assert o.cos > 0.99 and q.cos > 0.99 and o.beats_random and q.beats_random
    assert o.sv1 == pytest.approx(float(torch.linalg.svdvals(updates[(1, "o_proj")])[0]))
    # the control: random unit directions in 16 dimensions reach |cos| well below 1
    assert 0.2 < o.random_p95 < 0.9


def test_an_unrelated_update_does_not_beat_random_and_the_summary_counts_cells(tmp_path: Path) -> None:
    b, a = torch.stack([unit(10), unit(11)], 1), torch.stack([unit(12), unit(13)])
    folder = write_adapter(tmp_path / "adapter", {f"{i}.mlp.down_proj": (b, a) for i in range(3)})
    refs = {"t/planted": {i: unit(10).numpy() for i in range(3)}, "t/other": {i: unit(99).numpy() for i in range(3)}}
    cells = ap.probe(ap.lora_updates(folder), refs, top_k=1, n_random=500, seed=1)
    result = ap.summary(cells, {"finetune": "ft"})
    planted, other = result["references"]["t/planted"], result["references"]["t/other"]
    assert planted["n_cells"] == other["n_cells"] == 3
    assert planted["n_beats_random"] == 3 and other["n_beats_random"] == 0
    assert other["best"]["cos"] == pytest.approx(float(cells[cells.reference == "t/other"]["cos"].max()))
    fig = ap.adapter_probe_figure(cells, {**result, "top_k": 1, "n_random": 500, "n_modules": 3})
    heat, bars = fig.axes[0], fig.axes[1]
    assert heat.get_xlabel().startswith("block") and "n=500 random directions" in heat.get_title()
    assert bars.get_legend_handles_labels()[1] == ["chance (5%)"]
    assert [t.get_text() for t in bars.get_yticklabels()] == ["t/planted (n=3)", "t/other (n=3)"]


def test_references_use_each_traits_selection_method_and_the_organisms_chosen_method(tmp_path: Path) -> None:
    from traitscope.core.io import write_safetensors

    path = tmp_path / "directions.safetensors"
    write_safetensors(
        path,
        {"mean_diff.layer_2": torch.ones(D), "probe.layer_2": -torch.ones(D)},
        {"chosen": {"method": "probe", "layer": 2}},
    )
    refs = ap.references([], path)
    assert list(refs) == [ap.ORGANISM] and np.all(refs[ap.ORGANISM][2] == -1.0)


def test_its_finding_renders_as_text_on_the_reports_front_page() -> None:
    """The finding holds ``|cos|``, which reStructuredText reads as a substitution: the front page escapes it."""
    import re

    from docutils.core import publish_string

    from traitscope.findings import front_page

    line = "organism direction 100/205 (best |cos| 0.50 vs 0.09); *emphasis* `literal` under_score_ [1]"
    html = publish_string(
        front_page([("Adapter probe: bad_advice", line, True)], "Intro."), writer_name="html"
    ).decode()
    assert re.findall(r'class="system-message-title"', html) == []
    assert "best |cos| 0.50 vs 0.09); *emphasis* `literal` under_score_ [1]" in html
