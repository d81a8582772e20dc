# Parse-time helpers: config checks, the experimental grid, input functions.
# No torch here (it would slow every dry run); logic lives in src/prunelens.

from pathlib import Path

from snakemake.utils import validate

from prunelens.config import check

# One line naming the bad key, before any job runs (and before Snakemake's
# validate, which would dump the whole schema).
check(config, Path(workflow.basedir) / "workflow/schemas/config.schema.yaml")


validate(config, "../schemas/config.schema.yaml")


# The fixed vocabulary, not config lists: any single file stays requestable.
wildcard_constraints:
    method="sup|scl",
    schedule="dense|gmp|delayed_gmp|oneshot",
    sparsity=r"\d+",
    seed=r"\d+",


SEEDS = config["seeds"]
# Shipped with the workflow, so found from the Snakefile, not the working dir.
PAPER_TABLES = str(Path(workflow.basedir) / "workflow/resources/paper-tables.yaml")
SPARSITIES = config["sparsities"]


def cells(method):
    """(schedule, sparsity) pairs trained for a method, the dense s0 first."""
    return [("dense", 0)] + [
        (schedule, s) for schedule in config["schedules"][method] for s in SPARSITIES
    ]


def cifar10_archive(wildcards):
    if config["data"]["source"] == "official":
        return "results/data/cifar-10-python.tar.gz"
    return config["data"]["images_archive"]


GMP_SECTION = {
    ("sup", "gmp"): "sup",
    ("scl", "gmp"): "scl",
    ("scl", "delayed_gmp"): "scl_delayed",
}


def gmp_params(method):
    """Input function: the GMP schedule a training job depends on (none if dense)."""

    def params(wildcards):
        if wildcards.schedule == "dense":
            return None
        return config["gmp"][GMP_SECTION[(method, wildcards.schedule)]]

    return params


def head_gmp_params(wildcards):
    """The SCL linear head's GMP schedule (pruned models only)."""
    return None if wildcards.schedule == "dense" else config["gmp"]["scl_head"]


def population(schedule, sparsity):
    """Predictions files of every seed of one (method, schedule, sparsity)."""

    def inputs(wildcards):
        return expand(
            "results/predictions/{method}/{schedule}/s{sparsity}/seed{seed}.npz",
            method=wildcards.method,
            schedule=schedule or wildcards.schedule,
            sparsity=sparsity if sparsity is not None else wildcards.sparsity,
            seed=SEEDS,
        )

    return inputs


def table1_cells():
    """Per row of Table 1: its models' metrics files and its PIE csv."""
    out = []
    for method in config["methods"]:
        for schedule, s in cells(method):
            out.append(
                {
                    "method": method,
                    "schedule": schedule,
                    "sparsity": s,
                    "metrics": expand(
                        "results/models/{m}/{sc}/s{s}/seed{seed}/metrics.json",
                        m=method,
                        sc=schedule,
                        s=s,
                        seed=SEEDS,
                    ),
                    "pie": (
                        None
                        if schedule == "dense"
                        else f"results/pie/{method}/{schedule}/s{s}.csv"
                    ),
                }
            )
    return out


def table1_inputs(wildcards):
    cells_ = table1_cells()
    return [p for c in cells_ for p in c["metrics"]] + [
        c["pie"] for c in cells_ if c["pie"]
    ]
