# Parse-time helpers: config checks, the experimental grid, input functions.
# No torch here (it would slow every dry run); logic lives in src/prunelens.

import sys
from pathlib import Path

from snakemake.utils import validate

from prunelens.config import (
    CONFIG_RECORD,
    SCALE_MARKER,
    ConfigError,
    check,
    load_yaml,
    record_config,
    record_scale,
    scale_conflict,
    seed_blocks,
    seed_pattern_excluding,
)
from prunelens.datasets import DATASETS
from prunelens.study import (
    FIGURE_SCHEDULES,
    GMP_SECTION,
    HEAD_GMP_SECTION,
    IMP_LOOP,
    METHODS,
    METHOD_LABELS,
    POST_TRAINING_SCHEDULES,
    PRETRAIN_OBJECTIVE,
    PRUNED_SCHEDULES,
    SCHEDULE_LABELS,
    SCHEDULES,
    SPARSITY_TOLERANCE_PP,
    SPLIT_SIZES,
    Grid,
    arch_params,
    imp_schedule,
)

# One line naming the bad key, before any job runs (and before Snakemake's
# validate, which would dump the whole schema).
check(config, Path(workflow.basedir) / "workflow/schemas/config.schema.yaml")


validate(config, "../schemas/config.schema.yaml")


# A run of one scale must not overwrite another scale's results/. Whether this
# command runs jobs is known only once it starts (onstart: real runs only, not
# -n, --lint or --report): a dry run warns, a run stops before its first job.
SCALE_CONFLICT = (
    None if config["replace_scale"] else scale_conflict(SCALE_MARKER, config["scale"])
)
if SCALE_CONFLICT:
    print(f"Warning: {SCALE_CONFLICT}", file=sys.stderr)


def claim_results_for_this_scale():
    """Called when a run starts its jobs (the Snakefile's onstart); also
    records the run's config for `prunelens diff` (not a rule's output, so
    it never makes a job rerun, and dry runs, --lint and --report write none)."""
    if SCALE_CONFLICT:
        raise ConfigError(SCALE_CONFLICT)
    record_scale(SCALE_MARKER, config["scale"])
    record_config(CONFIG_RECORD, config)


# The fixed vocabulary, not config lists: any single file stays requestable.
wildcard_constraints:
    method="|".join(METHODS),
    schedule="|".join(SCHEDULES),
    sparsity=r"\d+",
    seed=r"\d+",


SEEDS = config["seeds"]
ANALYSIS = config["analysis"]
DEPTH_SEEDS = SEEDS[: ANALYSIS["depth"]["models"]]  # PD uses the first N models
# The paper's numbers, shipped with the workflow (found from the Snakefile),
# reach the table rules as params: their values, not a path on this machine,
# so a finished run copied or moved elsewhere plans nothing.
PAPER = load_yaml(Path(workflow.basedir) / "workflow/resources/paper-tables.yaml")
# The bootstrap settings Table 1's PIE CIs share with the claims.
BOOTSTRAP_KEYS = ("n_resamples", "confidence", "random_state")
# Per method, per schedule, the sparsities trained (config `schedules`).
GRID = Grid.from_config(config)
# The encoder every training job builds (its `arch` param): the chosen
# model.arch's keys only, so model.depth reruns nothing for ResNet-18.
ARCH = arch_params(config["model"])
# Blocks of seeds trained together by one job of every training stage
# (seeds_per_job > 1); the other seeds go one per job.
STACKED_BLOCKS = [b for b in seed_blocks(SEEDS, config["seeds_per_job"]) if len(b) > 1]
STACKED_SEEDS = [s for b in STACKED_BLOCKS for s in b]
SOLO_SEED = seed_pattern_excluding(STACKED_SEEDS)


def per_seed(pattern, block):
    """``pattern``'s ``{seed}`` filled in for each seed of a block."""
    return [pattern.replace("{seed}", str(s)) for s in block]


def one_seed(wildcards):
    """The seeds of a per-seed training job."""
    return [int(wildcards.seed)]


TENSORBOARD = (
    "results/logs/tensorboard/{stage}/{method}/{schedule}/s{sparsity}/seed{seed}"
)


def tensorboard_dirs(stage, block=None, **fixed):
    """Param function: the TensorBoard run directory of each seed of a
    training job of the stage named ``stage``; the seeds of ``block``, else
    the job's seed wildcard; ``fixed``: wildcard values a job lacks (IMP)."""

    def dirs(wildcards):
        w = {**dict(wildcards.items()), **fixed}
        seeds = block if block is not None else [wildcards.seed]
        return [TENSORBOARD.format(**{**w, "stage": stage, "seed": s}) for s in seeds]

    return dirs


# How and where a job runs, not what it computes (precision, which does
# change results, stays a param). Jobs read them as snakemake.resources.<name>;
# Snakemake never compares resources with an earlier run's, so changing one
# reruns no job (README, Configuration: untracked).
UNTRACKED = {
    "device": config["device"],
    "compile": config["compile"],
    "eval_batch_size": config["eval_batch_size"],
    # how often training logs (curves, progress lines): results stay the same
    "log_every_steps": config["logging"]["every_steps"],
    "progress_s": config["logging"]["progress_s"],
}


def job_resources(**own):
    """A job's resources: ``own`` and the untracked values."""
    return {**own, **UNTRACKED}


def stage_resources(stage, **own):
    """Resources of the block rules of ``stage`` (named by their seeds, which
    no profile can know): ``job_resources`` plus what a profile or
    --set-resources gives the stage's per-seed rule."""
    given = workflow.resource_settings.overwrite_resources.get(stage, {})
    return {
        **job_resources(**own),
        **{k: getattr(given[k], "value", given[k]) for k in given},
    }


# The One-Shot fine-tune's SGD settings; `scope` is the oneshot pruner's
# option (pruner_options), so changing it reruns no random cell.
ONESHOT_HP = {k: v for k, v in config["oneshot"].items() if k != "scope"}


def pruner_options(wildcards):
    """The options of the post-training pruner a prune_oneshot job runs."""
    if wildcards.schedule == "oneshot":
        return {"scope": config["oneshot"]["scope"]}
    return {}  # random: seeded by the model's seed, no option


def imp_sparsities(method):
    """A method's IMP sparsities: one IMP job per seed (rule train_imp for Sup,
    pretrain_imp for a contrastive method) writes them all."""
    return list(GRID.sparsities(method, "imp"))


def imp_epochs(method):
    """The epochs one IMP job of ``method`` trains: the dense run of the loop
    IMP runs over (study.IMP_LOOP), then each round from the rewind epoch."""
    loop = config
    for key in IMP_LOOP[method]:
        loop = loop[key]
    targets = [s / 100 for s in imp_sparsities(method)]
    if not targets:
        return 0
    rounds = len(imp_schedule(targets, config["imp"]["fraction"]))
    return loop["epochs"] + rounds * (loop["epochs"] - config["imp"]["rewind_epoch"])


def imp_tensorboard(of, **over):
    """The wildcard values an IMP job of method ``of`` names its TensorBoard
    runs by (the method, schedule imp, its highest sparsity); a value of
    ``over`` None drops one (the job's own wildcard then gives it)."""
    fixed = {
        "method": of,
        "schedule": "imp",
        "sparsity": max(imp_sparsities(of)),
        **over,
    }
    return {k: v for k, v in fixed.items() if v is not None}


# The contrastive methods that run IMP and their shared sparsities (the
# config check asks for one list: rule pretrain_imp's outputs cannot differ
# by method).
CONTRASTIVE_IMP = [m for m in PRETRAIN_OBJECTIVE if GRID.has(m, "imp")]
CONTRASTIVE_IMP_SPARSITIES = (
    imp_sparsities(CONTRASTIVE_IMP[0]) if CONTRASTIVE_IMP else []
)


def cells(method):
    """(schedule, sparsity) pairs trained for a method, the dense s0 first."""
    return GRID.cells(method)


# The data set (data.dataset): its prepared file, which every stage reads,
# its official archive (source: official) and the values keyed by data set.
DATASET = config["data"]["dataset"]
PREPARED = f"results/data/{DATASET}.npz"
OFFICIAL_ARCHIVE = f"results/data/{DATASETS[DATASET].archive}"
NORM = {"mean": config["data"]["mean"][DATASET], "std": config["data"]["std"][DATASET]}

# Sizes behind the resource requests (null subsets: all of the split).
N_TRAIN = config["data"]["subset_train"] or SPLIT_SIZES["train"]
N_TEST = config["data"]["subset_test"] or SPLIT_SIZES["test"]
# A training job holds the uint8 training set and a few copies of batches.
TRAIN_MEM_MB = 2000 + N_TRAIN // 25


def job_runtime(images, gpu_s, cpu_s, base=10):
    """Wall-time limit in minutes of a job that pushes ``images`` images
    through WRN-16-2: ``base`` plus ``gpu_s`` seconds per 1,000 images on a
    GPU (``device: cuda``) or ``cpu_s`` on one CPU core (divided by the
    job's threads); about 2 to 5 times what was measured (README), doubled
    on each retry. ``images`` may be a function of the wildcards."""

    def runtime(wildcards, threads, attempt):
        s_per_1k = gpu_s if config["device"] == "cuda" else cpu_s / threads
        n = images(wildcards) if callable(images) else images
        return int(attempt * (base + n / 1000 * s_per_1k / 60))

    return runtime


def cifar10_archive(wildcards):
    if config["data"]["source"] == "official":
        return OFFICIAL_ARCHIVE
    return config["data"]["images_archive"]


def gmp_params(method=None):
    """Input function: the GMP schedule a training job depends on (none if
    dense); ``method`` None: the job's method wildcard."""

    def params(wildcards):
        if wildcards.schedule == "dense":
            return None
        m = method or wildcards.method
        return config["gmp"][GMP_SECTION[(m, wildcards.schedule)]]

    return params


def head_gmp_params(wildcards):
    """A contrastive method's linear head GMP schedule (pruned models only)."""
    section = HEAD_GMP_SECTION.get((wildcards.method, wildcards.schedule))
    return None if section is None else config["gmp"][section]


# The contrastive methods (pre-training, then a linear head): SCL, SimCLR.
CONTRASTIVE = "|".join(PRETRAIN_OBJECTIVE)


def contrastive_hp(stage):
    """Input function: the job's method's ``pretrain`` or ``head`` section."""
    return lambda wildcards: config[wildcards.method][stage]


def contrastive_images(stage, seeds=1):
    """Images ``seeds`` models of a contrastive ``stage`` job push (runtime)."""
    return lambda wildcards: (
        seeds * config[wildcards.method][stage]["epochs"] * N_TRAIN
    )


def pretrain_mem_mb(seeds=None):
    """Memory of a pre-training job (``seeds`` None: per-seed rule)."""

    def mem_mb(wildcards):
        batch = config[wildcards.method]["pretrain"]["batch_size"]
        if seeds is None:
            return TRAIN_MEM_MB + 4 * batch
        return TRAIN_MEM_MB + seeds * (200 + 4 * batch)

    return mem_mb


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
                    "predictions": predictions(method, schedule, s),
                    "pie": (
                        None
                        if schedule == "dense"
                        else f"results/pie/{method}/{schedule}/s{s}.csv"
                    ),
                }
            )
    return out


def sparsity_cells():
    """Per cell of the grid (dense included): its models' metrics files."""
    return [
        {k: c[k] for k in ("method", "schedule", "sparsity", "metrics")}
        for c in table1_cells()
    ]


def predictions(method, schedule, s, seeds=SEEDS):
    return expand(
        "results/predictions/{m}/{sc}/s{s}/seed{seed}.npz",
        m=method,
        sc=schedule,
        s=s,
        seed=seeds,
    )


def table1_inputs(wildcards):
    cells_ = table1_cells()
    return [p for c in cells_ for p in c["metrics"] + c["predictions"]] + [
        c["pie"] for c in cells_ if c["pie"]
    ]


def claims_populations():
    """Every population the claims read: predictions and metrics of each
    cell, and (``pd:`` keys) the per-model depth files of each cell."""
    pops = [
        {
            "key": f"{c['method']}/{c['schedule']}/s{c['sparsity']}",
            "predictions": c["predictions"],
            "metrics": c["metrics"],
        }
        for c in table1_cells()
    ]
    pops += [
        {
            "key": f"pd:{m}/{sc}/s{s}",
            "depth": expand(
                "results/depth/{m}/{sc}/s{s}/seed{seed}.npz",
                m=m,
                sc=sc,
                s=s,
                seed=DEPTH_SEEDS,
            ),
        }
        for m, sc, s in GRID.all_cells()
    ]
    return pops


def claims_inputs(wildcards):
    return sorted(
        {
            p
            for pop in claims_populations()
            for k in ("predictions", "metrics", "depth")
            for p in pop.get(k, [])
        }
    )


# The (method, schedule) columns of Figures 1, 2, 3, 5 and 7: every figure
# schedule the grid trains (the paper's grid: its four columns).
FIGURE_COLUMNS = GRID.figure_columns()


def trained_sparsity(requested, columns=FIGURE_COLUMNS):
    """The sparsity a figure of ``columns`` shows: ``requested`` if trained,
    else the largest trained one below it (else the smallest). Scripts log
    any substitution."""
    return GRID.nearest(requested, [c for c in columns if has(*c)])


def umap_cells():
    """(method, schedule, sparsity) of every UMAP panel (Figures 1 and 5)."""
    out = []
    for method in GRID.methods:
        out.append((method, "dense", 0))
        for m, schedule in FIGURE_COLUMNS:
            if m == method:
                out += [(m, schedule, s) for s in GRID.sparsities(m, schedule)]
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


def has(method, schedule, sparsity=None):
    return GRID.has(method, schedule, sparsity)


def table3_pies():
    """Sup / GMP PIE tables by sparsity (Table 3)."""
    return {s: pie_csv("sup", "gmp", s) for s in GRID.sparsities("sup", "gmp")}


def qscore_cells(*methods):
    """Rows of Table 4 (the contrastive methods) or 5 (Sup): every population
    of each method."""
    return [cell for method in methods for cell in _qscore_cells(method)]


def _qscore_cells(method):
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
    the schedule's largest sparsity) then each sparsity."""
    out = []
    for method in GRID.methods:
        for group in GRID.pruned_schedules(method):
            trained = GRID.sparsities(method, group)
            rows = [("dense", 0, max(trained))] + [(group, s, s) for s in trained]
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
                        "pie_sparsity": pie_s,
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
        for sc in FIGURE_SCHEDULES
        for s in GRID.shared_sparsities(sc)
    ]


def cell_paths(cells_, *keys):
    """Flatten the paths named by ``keys`` in a list of cell mappings."""
    return sorted({c[k] for c in cells_ for k in keys if c.get(k)})


SCATTER_SPARSITY = trained_sparsity(90)  # Figures 2 and 3 (paper: 90%)
# Figure 6 shows one method's GMP and One-Shot PIEs at one sparsity both have
# (or those of the two the grid trains): SCL's (the paper), else the first
# contrastive method's, else Sup's.
GALLERY_METHOD = next(m for m in (*PRETRAIN_OBJECTIVE, *METHODS) if m in GRID.methods)
GALLERY_COLUMNS = [
    c for c in ((GALLERY_METHOD, "gmp"), (GALLERY_METHOD, "oneshot")) if has(*c)
]
GALLERY_SPARSITY = GRID.nearest(
    ANALYSIS["gallery_sparsity"], GALLERY_COLUMNS, common=True
)
# Table 4: Q-Score of the contrastive methods present (the paper: SCL).
QSCORE_CONTRASTIVE = [m for m in PRETRAIN_OBJECTIVE if m in GRID.methods]
QSCORE_CONTRASTIVE_LABELS = " and ".join(METHOD_LABELS[m] for m in QSCORE_CONTRASTIVE)


def gallery_pies():
    """Figure 6's PIE tables, by schedule: those of GALLERY_COLUMNS."""
    return {sc: pie_csv(m, sc, GALLERY_SPARSITY) for m, sc in GALLERY_COLUMNS}


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
        if has(m, sc, SCATTER_SPARSITY)
    ]


def pie_tables(schedules):
    """The PIE tables of both methods under ``schedules`` at the sparsities
    both methods share (Figures 4 and 7 compare Sup with SCL), keyed for scripts."""
    return {
        f"{m}_{sc}_s{s}": pie_csv(m, sc, s)
        for sc in schedules
        for s in GRID.shared_sparsities(sc)
        for m in ("sup", "scl")
    }


def pie_class_rows(schedules):
    """Rows of Figures 4 (one per method) and 7 (one per sparsity)."""
    if schedules == ["oneshot"]:
        return [
            (label, [(m, "oneshot", s) for s in GRID.shared_sparsities("oneshot")])
            for m, label in (
                ("sup", "(a) Sup / One-Shot"),
                ("scl", "(b) SCL / One-Shot"),
            )
        ]
    shared = sorted({s for sc in schedules for s in GRID.shared_sparsities(sc)})
    return [
        (
            f"{s}%",
            [  # the Sup and SCL columns only: the figure compares those two
                (m, sc, s)
                for m, sc in FIGURE_COLUMNS
                if m in ("sup", "scl")
                and sc in schedules
                and s in GRID.shared_sparsities(sc)
            ],
        )
        for s in shared
    ]


# ---- training curves (figures/curves/<method>/<schedule>.png, fig_curves)

# Every (method, schedule) the grid trains, dense first: one figure each.
CURVE_FAMILIES = [
    (m, sc) for m in GRID.methods for sc in ("dense", *GRID.pruned_schedules(m))
]


def curve_panels(method, schedule):
    """A curves figure's stages in training order, per sparsity: the seeds'
    curves CSVs (contrastive pre-training: encoder_curves.csv)."""
    model_dir = "results/models/{m}/{sc}/s{s}/seed{seed}/"
    if schedule in POST_TRAINING_SCHEDULES:
        stages = [("fine-tuning", "curves.csv")]
    elif method in PRETRAIN_OBJECTIVE:
        stages = [("pre-training", "encoder_curves.csv"), ("linear head", "curves.csv")]
    else:
        stages = [("training", "curves.csv")]
    return [
        {
            "stage": stage,
            "sparsity": s,
            "files": expand(model_dir + name, m=method, sc=schedule, s=s, seed=SEEDS),
        }
        for stage, name in stages
        for s in GRID.sparsities(method, schedule)
    ]


def curve_files():
    """Every curves CSV the training-curves figures read."""
    return [
        f for m, sc in CURVE_FAMILIES for p in curve_panels(m, sc) for f in p["files"]
    ]


def umap_sparsities():
    """Rows of Figure 5: every sparsity of a GMP or One-Shot UMAP cell."""
    return GRID.all_sparsities([c for c in FIGURE_COLUMNS if has(*c)])
