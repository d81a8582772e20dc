# prunelens: Corti et al. (2022), "Studying the impact of magnitude pruning on
# contrastive learning methods", as a workflow. Read README.md first.

from snakemake.utils import min_version

min_version("9.20")


configfile: "config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"  # config checks, grid helpers, wildcards
include: "workflow/rules/data.smk"  # CIFAR-10 download and preparation
include: "workflow/rules/train.smk"  # Sup training, GMP, One-Shot
include: "workflow/rules/evaluate.smk"  # test predictions, prediction depth
include: "workflow/rules/analyse.smk"  # PIEs, Q-Score, UMAP
include: "workflow/rules/report.smk"  # the paper's tables and figures


rule all:
    default_target: True
    input:
        rules.all_tables.input,
        rules.all_figures.input,
    localrule: True
