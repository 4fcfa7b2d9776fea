"""Each experiment's finding in one line beside its control: results/findings.{md,json} and the report's front page."""

from pathlib import Path

from traitscope.core.io import write_json, write_text
from traitscope.findings import as_json, findings, front_page, markdown
from traitscope.results import open_results
from traitscope.workflow.jobs import setup

smk = snakemake  # noqa: F821 - injected by Snakemake
log = setup(smk)
items = findings(open_results(Path(smk.output.markdown).parent, workdir="."))
write_text(smk.output.markdown, "# Findings\n\n" + markdown(items))
write_json(smk.output.json, as_json(items))
write_text(smk.output.front, front_page(items, Path(smk.input.intro).read_text(encoding="utf-8")))
log.info("%d findings, %d beat their control", len(items), sum(v is True for _, _, v in items))
