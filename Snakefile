# traitscope: prep -> finetune -> extract -> capture -> project -> analyze
#
#   snakemake --cores 2 results/all            # the whole study on the configured variants
#   snakemake -n results/all                   # the plan (dry run)
#   snakemake --rulegraph | dot -Tpng > dag.png
#   snakemake --report report.zip              # every figure and key table, with captions (after a run)
#
# The config is validated at start-up into typed settings (rules/common.smk); paths come from
# traitscope.workflow.layout, so the rule files can be included in any order.

from snakemake.utils import min_version

min_version("8.20")


# The default study, unless --configfile names another: Snakemake would otherwise deep-merge the
# two, and a study would silently inherit the default's traits and prompt sets.
if not workflow.config_settings.configfiles:

    configfile: "config/config.yaml"


include: "rules/common.smk"
include: "rules/prep.smk"
include: "rules/finetune.smk"
include: "rules/extract.smk"
include: "rules/capture.smk"
include: "rules/project.smk"
include: "rules/analyze.smk"


# Each configured experiment's rules (traitscope/experiments/<name>/rules.smk), from the registry
# (traitscope/experiments/__init__.py).
for experiment, _ in EXPERIMENTS:

    include: str(experiment.rules or f"rules/{experiment.name}.smk")


# The report's front page: after a run, the study's findings beside their controls (rule findings); before, the intro.
report: FRONT_PAGE


localrules:
    all,


rule all:
    default_target: True
    input:
        L.manifest(),
