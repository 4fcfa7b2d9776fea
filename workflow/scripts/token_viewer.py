"""The per-token viewer: one self-contained HTML page from every per-token projection table."""

from traitscope.core.artifacts import BaselineScores, TraitVectors, best_layers, trait_sites
from traitscope.core.chat import token_texts
from traitscope.core.models import load_tokenizer
from traitscope.viewer import build_data, read_panel, token_bands, token_ids, write_viewer
from traitscope.workflow.jobs import setup

smk = snakemake  # noqa: F821 - injected by Snakemake
log = setup(smk)
p = smk.params
files: dict[tuple[str, str], list[str]] = {}
for panel, f in zip(p.panels, smk.input.tokens):
    files.setdefault(tuple(panel), []).append(f)
prompt_file = dict(zip(p.prompt_sets, smk.input.prompts))


def decoder(variant):
    tok = load_tokenizer(p.variants[variant], key=f"variants.{variant}")
    return lambda ids: token_texts(tok, ids)  # a character split over tokens shows whole, not as U+FFFD


panel_ids = {panel: token_ids(fs) for panel, fs in files.items()}
sidecars = [TraitVectors.load_info(f) for f in smk.input.sidecars]
sites = trait_sites(sidecars)
baselines = {tuple(panel): f for panel, f in zip(p.banded, smk.input.baselines, strict=True)}
data = build_data(
    panel_ids,
    lambda panel, ids: read_panel(files[panel], prompt_file[panel[1]], ids),
    {v: decoder(v) for v in sorted({v for v, _ in files})},
    p.comparisons,
    p.viewer,
    p.seed,
    bands=lambda panel, ids: (
        token_bands(BaselineScores.load(baselines[panel]), ids, sites, p.viewer.max_tokens)
        if panel in baselines
        else {}
    ),
    chosen=best_layers(sidecars),
)
size = write_viewer(smk.output.page, data)
shown = sum(len(v) for v in data["prompts"].values())
log.info(
    "token viewer: %d panels, %d prompts shown of %d, %d traits, %d comparison views, %.1f MB -> %s",
    len(data["panels"]),
    shown,
    sum(data["totals"].values()),
    len(data["traits"]),
    len(data["comparisons"]),
    size / 1e6,
    smk.output.page,
)
