# traitscope: prep -> finetune -> extract -> capture -> project -> analyze
#
#   snakemake --cores 2 results/all            # the whole study on the configured variants
#   snakemake -n results/all                   # the plan (dry run)
#   snakemake --rulegraph | dot -Tpng > dag.png
#
# The config is validated at start-up (schema + cross-references, one-line errors).

from snakemake.utils import min_version

min_version("8.20")


configfile: "config/config.yaml"


include: "rules/common.smk"
include: "rules/prep.smk"
include: "rules/extract.smk"
include: "rules/capture.smk"
include: "rules/project.smk"
include: "rules/analyze.smk"


rule all:
    default_target: True
    input:
        f"{R}/all",
