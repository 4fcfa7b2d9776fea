"""notebooks/live_model.ipynb runs on the embedded default, and its stored outputs are what the code gives now: a
reader who never runs it sees true tables and figures. (quickstart.ipynb runs on the tiny study in
test_workflow.py.)"""

from __future__ import annotations

import os

import pytest
from conftest import REPO
from stored_outputs import assert_runs_as_stored, same_text, shown

LIVE = REPO / "notebooks" / "live_model.ipynb"


def test_the_stored_live_notebook_shows_results_not_progress():
    import nbformat

    nb = nbformat.read(LIVE, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(c.get("outputs") for c in code), "every code cell is stored with its outputs"
    for c in code:
        assert not [o for o in c.outputs if o.output_type == "stream" and o.name == "stderr"]
        assert not [o for o in c.outputs if o.output_type == "error"]
    kinds = {k for cell in shown(nb) for k, _ in cell}
    assert {"stdout", "result", "image"} <= kinds
    text = "".join(t for cell in shown(nb) for _, t in cell)
    for needed in ("random_auc_p95", "random_p95", "beats_random", "trait_score", "coherence", "SAE:"):
        assert needed in text, needed


@pytest.mark.e2e
@pytest.mark.skipif(os.environ.get("TRAITSCOPE_SKIP_EMBEDDED") == "1", reason="TRAITSCOPE_SKIP_EMBEDDED=1")
def test_the_live_notebook_gives_its_stored_outputs_on_the_embedded_default():
    assert_runs_as_stored(LIVE)


def test_same_text_tolerates_rounding_only():
    assert same_text("auc 0.803 n=40", "auc 0.806 n=40")
    assert not same_text("auc 0.803 n=40", "auc 0.903 n=40")
    assert not same_text("auc 0.803 n=40", "AUC 0.803 n=40")
