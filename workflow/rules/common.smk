# Parse-time helpers: config checks, the experimental grid, input functions.
# No torch here (it would slow every dry run); logic lives in src/prunelens.

from pathlib import Path

from snakemake.utils import validate

from prunelens.config import check, seed_blocks, seed_pattern_excluding

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
ANALYSIS = config["analysis"]
DEPTH_SEEDS = SEEDS[: ANALYSIS["depth"]["models"]]  # PD uses the first N models
# Shipped with the workflow, so found from the Snakefile, not the working dir.
PAPER_TABLES = str(Path(workflow.basedir) / "workflow/resources/paper-tables.yaml")
SPARSITIES = config["sparsities"]
# Blocks of seeds trained together by one Sup job (seeds_per_job > 1).
STACKED_BLOCKS = [b for b in seed_blocks(SEEDS, config["seeds_per_job"]) if len(b) > 1]
STACKED_SEEDS = [s for b in STACKED_BLOCKS for s in b]


def cells(method):
    """(schedule, sparsity) pairs trained for a method, the dense s0 first."""
    return [("dense", 0)] + [
        (schedule, s) for schedule in config["schedules"][method] for s in SPARSITIES
    ]


# Sizes behind the resource requests (null subsets: all of CIFAR-10).
N_TRAIN = config["data"]["subset_train"] or 50000
N_TEST = config["data"]["subset_test"] or 10000
# A training job holds the uint8 training set and a few copies of batches.
TRAIN_MEM_MB = 2000 + N_TRAIN // 25


def job_runtime(images, gpu_s, cpu_s, base=10):
    """Wall-time limit in minutes of a job that pushes ``images`` images
    through WRN-16-2: ``base`` plus ``gpu_s`` seconds per 1,000 images on a
    GPU (``device: cuda``) or ``cpu_s`` on one CPU core (divided by the
    job's threads); about 2 to 5 times what was measured (README), doubled
    on each retry."""

    def runtime(wildcards, threads, attempt):
        s_per_1k = gpu_s if config["device"] == "cuda" else cpu_s / threads
        return int(attempt * (base + images / 1000 * s_per_1k / 60))

    return runtime


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


def trained_sparsity(requested):
    """The sparsity a figure shows: ``requested`` if trained, else the largest
    trained one below it (else the smallest). Scripts log any substitution."""
    below = [s for s in sorted(SPARSITIES) if s <= requested]
    return below[-1] if below else min(SPARSITIES)


def umap_cells():
    """(method, schedule, sparsity) of every UMAP panel (Figures 1 and 5)."""
    out = []
    for method in config["methods"]:
        out.append((method, "dense", 0))
        for schedule in ("gmp", "oneshot"):
            if schedule in config["schedules"][method]:
                out += [(method, schedule, s) for s in sorted(SPARSITIES)]
    return out


def umap_inputs(wildcards):
    """Named inputs of embed_umap: ``pred_<cell>`` (all seeds), ``pie_<cell>``."""
    out = {}
    for m, sc, s in umap_cells():
        out[f"pred_{m}_{sc}_s{s}"] = expand(
            "results/predictions/{m}/{sc}/s{s}/seed{seed}.npz",
            m=m,
            sc=sc,
            s=s,
            seed=SEEDS,
        )
        if sc != "dense":
            out[f"pie_{m}_{sc}_s{s}"] = f"results/pie/{m}/{sc}/s{s}.csv"
    return out


# ---- tables and figures: which populations each one reads


def pie_csv(method, schedule, s):
    return f"results/pie/{method}/{schedule}/s{s}.csv"


def has(method, schedule):
    return method in config["methods"] and schedule in config["schedules"][method]


def table3_pies():
    """Sup / GMP PIE tables by sparsity (Table 3)."""
    return {s: pie_csv("sup", "gmp", s) for s in SPARSITIES if has("sup", "gmp")}


def qscore_cells(method):
    """Rows of Table 4 (SCL) or 5 (Sup): every population of the method."""
    if method not in config["methods"]:
        return []
    return [
        {
            "method": method,
            "schedule": schedule,
            "sparsity": s,
            "scores": f"results/scores/q/{method}/{schedule}/s{s}.csv",
            "pie": None if schedule == "dense" else pie_csv(method, schedule, s),
        }
        for schedule, s in cells(method)
    ]


def depth_cells():
    """Rows of Table 6: per method and schedule, dense (split by the PIEs of
    the largest sparsity) then each sparsity."""
    out = []
    top = max(SPARSITIES)
    for method in config["methods"]:
        for group in config["schedules"][method]:
            rows = [("dense", 0, top)] + [(group, s, s) for s in sorted(SPARSITIES)]
            for schedule, s, pie_s in rows:
                out.append(
                    {
                        "method": method,
                        "schedule": schedule,
                        "group": group,
                        "sparsity": s,
                        "n_models": len(DEPTH_SEEDS),
                        "scores": f"results/scores/pd/{method}/{schedule}/s{s}.csv",
                        "pie": pie_csv(method, group, pie_s),
                    }
                )
    return out


def overlap_cells():
    """Schedules both methods share, per sparsity (PIE overlap table, Fig. 7)."""
    return [
        {
            "schedule": sc,
            "sparsity": s,
            "sup": pie_csv("sup", sc, s),
            "scl": pie_csv("scl", sc, s),
        }
        for sc in ("gmp", "oneshot")
        if has("sup", sc) and has("scl", sc)
        for s in sorted(SPARSITIES)
    ]


def cell_paths(cells_, *keys):
    """Flatten the paths named by ``keys`` in a list of cell mappings."""
    return sorted({c[k] for c in cells_ for k in keys if c.get(k)})


# The four method/schedule columns of Figures 2, 3, 5 and 7.
FIGURE_COLUMNS = [
    ("sup", "gmp"),
    ("sup", "oneshot"),
    ("scl", "gmp"),
    ("scl", "oneshot"),
]
SCATTER_SPARSITY = trained_sparsity(90)  # Figures 2 and 3 (paper: 90%)


def scatter_cells(kind):
    """Figure 2 (kind "q") and 3 (kind "pd"): dense versus sparse per column."""
    return [
        {
            "method": m,
            "schedule": sc,
            "dense": f"results/scores/{kind}/{m}/dense/s0.csv",
            "sparse": f"results/scores/{kind}/{m}/{sc}/s{SCATTER_SPARSITY}.csv",
            "pie": pie_csv(m, sc, SCATTER_SPARSITY),
        }
        for m, sc in FIGURE_COLUMNS
        if has(m, sc)
    ]


def pie_tables(schedules):
    """All PIE tables of both methods under ``schedules``, keyed for scripts."""
    return {
        f"{m}_{sc}_s{s}": pie_csv(m, sc, s)
        for m in ("sup", "scl")
        for sc in schedules
        if has(m, sc)
        for s in SPARSITIES
    }
