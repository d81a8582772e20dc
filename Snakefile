# prunelens: Corti et al. (2022), "Studying the impact of magnitude pruning on
# contrastive learning methods", as a workflow. Read README.md first.

from snakemake.utils import min_version

min_version("9.20")

from pathlib import Path

from prunelens.config import check_config_files

# Before Snakemake reads config.yaml (its messages name no file), and the
# --configfile files it has read: bad YAML, not a mapping or a key given twice
# (YAML keeps the last silently) stops here with one line naming the file.
check_config_files(
    (["config.yaml"] if Path("config.yaml").is_file() else [])
    + list(workflow.overwrite_configfiles)
)


configfile: "config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"  # config checks, grid helpers, wildcards
include: "workflow/rules/data.smk"  # CIFAR-10 download and preparation
include: "workflow/rules/train.smk"  # Sup training, GMP, One-Shot
include: "workflow/rules/evaluate.smk"  # test predictions, prediction depth
include: "workflow/rules/analyse.smk"  # PIEs, Q-Score, UMAP
include: "workflow/rules/report.smk"  # the paper's tables and figures


# Real runs only (not -n, --lint, --report): one scale never overwrites
# another's results/ unasked (common.smk, README "Scales share results/").
onstart:
    claim_results_for_this_scale()


rule all:
    default_target: True
    input:
        rules.all_tables.input,
        rules.all_figures.input,
    localrule: True
