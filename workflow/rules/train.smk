# Training: Sup from scratch (dense, or GMP during training); SCL and SimCLR
# as contrastive pre-training (SupCon or NT-Xent loss; dense, GMP or delayed
# GMP) then a linear head on the frozen encoder; One-Shot and Random
# (magnitude or random masks on a dense model, then fine-tuning: rule
# prune_oneshot) for every method; IMP for every method (one job per seed
# writes every IMP sparsity of its method: train_imp for Sup; pretrain_imp
# for SCL and SimCLR, IMP over the pre-training of the encoder, then the usual
# fit_linear_head with GMP on the head). Each job checkpoints resume.pt (IMP:
# also resume.imp*.pt) beside its first output every epoch and resumes from
# it when its settings match.
#
# Every stage has a per-seed rule and, with seeds_per_job > 1, one rule per
# block of seeds (named <stage>_seeds<first>_<last>) whose job trains the
# block's models together (prunelens.stacked) and writes each seed the files
# of the per-seed rule. Block rules take the resources that a profile or
# --set-resources gives their stage's per-seed rule. device, compile and
# eval_batch_size come as resources (common.smk, UNTRACKED), not params.
#
# Every job writes each seed's training curves: a CSV beside its metrics.json
# (curves.csv) or encoder.pt (encoder_curves.csv), and a TensorBoard run
# directory under results/logs/tensorboard/<rule>/ (param tensorboard; the
# logging cadence, logging.*, is untracked).

SUP_MODEL = "results/models/sup/{schedule}/s{sparsity}/seed{seed}/model.pt"
SUP_METRICS = "results/models/sup/{schedule}/s{sparsity}/seed{seed}/metrics.json"
SUP_CURVES = "results/models/sup/{schedule}/s{sparsity}/seed{seed}/curves.csv"
# SCL's and SimCLR's (method wildcard: CONTRASTIVE)
ENCODER = "results/models/{method}/{schedule}/s{sparsity}/seed{seed}/encoder.pt"
ENCODER_CURVES = (
    "results/models/{method}/{schedule}/s{sparsity}/seed{seed}/encoder_curves.csv"
)
SCL_MODEL = "results/models/{method}/{schedule}/s{sparsity}/seed{seed}/model.pt"
SCL_METRICS = "results/models/{method}/{schedule}/s{sparsity}/seed{seed}/metrics.json"
SCL_CURVES = "results/models/{method}/{schedule}/s{sparsity}/seed{seed}/curves.csv"
DENSE_MODEL = "results/models/{method}/dense/s0/seed{seed}/model.pt"
OS_MODEL = "results/models/{method}/{schedule}/s{sparsity}/seed{seed}/model.pt"
OS_METRICS = "results/models/{method}/{schedule}/s{sparsity}/seed{seed}/metrics.json"
OS_CURVES = "results/models/{method}/{schedule}/s{sparsity}/seed{seed}/curves.csv"
# The schedules rule prune_oneshot runs: a post-training pruner, then the
# One-Shot fine-tune (prunelens.methods.PRUNERS).
POST_TRAINING = "|".join(POST_TRAINING_SCHEDULES)
# IMP jobs write every sparsity of a seed: {sparsity} is expanded at parse time.
IMP_MODEL = "results/models/sup/imp/s{sparsity}/seed{{seed}}/model.pt"
IMP_METRICS = "results/models/sup/imp/s{sparsity}/seed{{seed}}/metrics.json"
IMP_CURVES = "results/models/sup/imp/s{sparsity}/seed{{seed}}/curves.csv"
IMP_ENCODER = "results/models/{{method}}/imp/s{sparsity}/seed{{seed}}/encoder.pt"
SUP_IMP = imp_sparsities("sup")
IMP_ENCODER_CURVES = (
    "results/models/{{method}}/imp/s{sparsity}/seed{{seed}}/encoder_curves.csv"
)


rule train_supervised:
    input:
        data=PREPARED,
    output:
        model=SUP_MODEL,
        metrics=SUP_METRICS,
        curves=SUP_CURVES,
    log:
        "results/logs/train_supervised/sup/{schedule}/s{sparsity}/seed{seed}.log",
    wildcard_constraints:
        schedule="dense|gmp",
        seed=SOLO_SEED,
    conda:
        "../../envs/prunelens.yaml"
    threads: 1
    resources:
        **job_resources(
            runtime=job_runtime(config["sup"]["epochs"] * N_TRAIN, 0.3, 7.5),
            mem_mb=TRAIN_MEM_MB,
        ),
    params:
        seeds=one_seed,
        arch=ARCH,
        hp=config["sup"],
        norm=NORM,
        gmp=gmp_params("sup"),
        precision=config["precision"],
        tensorboard=tensorboard_dirs("train_supervised", method="sup"),
    script:
        "../scripts/train_supervised.py"


for block in STACKED_BLOCKS:

    rule:
        name:
            f"train_supervised_seeds{block[0]}_{block[-1]}"
        input:
            data=PREPARED,
        output:
            model=per_seed(SUP_MODEL, block),
            metrics=per_seed(SUP_METRICS, block),
            curves=per_seed(SUP_CURVES, block),
        log:
            f"results/logs/train_supervised/sup/{{schedule}}/s{{sparsity}}/seeds{block[0]}-{block[-1]}.log",
        wildcard_constraints:
            schedule="dense|gmp",
        conda:
            "../../envs/prunelens.yaml"
        threads: 1
        resources:
            **stage_resources(
                "train_supervised",
                runtime=job_runtime(
                    len(block) * config["sup"]["epochs"] * N_TRAIN, 0.3, 7.5
                ),
                mem_mb=TRAIN_MEM_MB + 200 * len(block),
            ),
        params:
            seeds=block,
            arch=ARCH,
            hp=config["sup"],
            norm=NORM,
            gmp=gmp_params("sup"),
            precision=config["precision"],
            tensorboard=tensorboard_dirs("train_supervised", block, method="sup"),
        script:
            "../scripts/train_supervised.py"


rule pretrain_supcon:
    input:
        data=PREPARED,
    output:
        encoder=ENCODER,
        curves=ENCODER_CURVES,
    log:
        "results/logs/pretrain_supcon/{method}/{schedule}/s{sparsity}/seed{seed}.log",
    wildcard_constraints:
        method=CONTRASTIVE,
        schedule="dense|gmp|delayed_gmp",
        seed=SOLO_SEED,
    conda:
        "../../envs/prunelens.yaml"
    threads: 1
    resources:
        **job_resources(
            runtime=job_runtime(contrastive_images("pretrain"), 0.45, 15),
            mem_mb=pretrain_mem_mb(),
        ),
    params:
        seeds=one_seed,
        arch=ARCH,
        hp=contrastive_hp("pretrain"),
        norm=NORM,
        gmp=gmp_params(),
        precision=config["precision"],
        tensorboard=tensorboard_dirs("pretrain_supcon"),
    script:
        "../scripts/pretrain_supcon.py"


for block in STACKED_BLOCKS:

    rule:
        name:
            f"pretrain_supcon_seeds{block[0]}_{block[-1]}"
        input:
            data=PREPARED,
        output:
            encoder=per_seed(ENCODER, block),
            curves=per_seed(ENCODER_CURVES, block),
        log:
            f"results/logs/pretrain_supcon/{{method}}/{{schedule}}/s{{sparsity}}/seeds{block[0]}-{block[-1]}.log",
        wildcard_constraints:
            method=CONTRASTIVE,
            schedule="dense|gmp|delayed_gmp",
        conda:
            "../../envs/prunelens.yaml"
        threads: 1
        resources:
            **stage_resources(
                "pretrain_supcon",
                runtime=job_runtime(
                    contrastive_images("pretrain", len(block)), 0.45, 15
                ),
                mem_mb=pretrain_mem_mb(len(block)),
            ),
        params:
            seeds=block,
            arch=ARCH,
            hp=contrastive_hp("pretrain"),
            norm=NORM,
            gmp=gmp_params(),
            precision=config["precision"],
            tensorboard=tensorboard_dirs("pretrain_supcon", block),
        script:
            "../scripts/pretrain_supcon.py"


rule fit_linear_head:
    input:
        data=PREPARED,
        encoder=ENCODER,
    output:
        model=SCL_MODEL,
        metrics=SCL_METRICS,
        curves=SCL_CURVES,
    log:
        "results/logs/fit_linear_head/{method}/{schedule}/s{sparsity}/seed{seed}.log",
    wildcard_constraints:
        method=CONTRASTIVE,
        schedule="dense|gmp|delayed_gmp|imp",
        seed=SOLO_SEED,
    conda:
        "../../envs/prunelens.yaml"
    threads: 1
    resources:
        **job_resources(
            runtime=job_runtime(contrastive_images("head"), 0.1, 2.5),
            mem_mb=TRAIN_MEM_MB,
        ),
    params:
        seeds=one_seed,
        hp=contrastive_hp("head"),
        augment=config["sup"]["augment"],
        norm=NORM,
        gmp=head_gmp_params,
        precision=config["precision"],
        tensorboard=tensorboard_dirs("fit_linear_head"),
    script:
        "../scripts/fit_linear_head.py"


for block in STACKED_BLOCKS:

    rule:
        name:
            f"fit_linear_head_seeds{block[0]}_{block[-1]}"
        input:
            data=PREPARED,
            encoder=per_seed(ENCODER, block),
        output:
            model=per_seed(SCL_MODEL, block),
            metrics=per_seed(SCL_METRICS, block),
            curves=per_seed(SCL_CURVES, block),
        log:
            f"results/logs/fit_linear_head/{{method}}/{{schedule}}/s{{sparsity}}/seeds{block[0]}-{block[-1]}.log",
        wildcard_constraints:
            method=CONTRASTIVE,
            schedule="dense|gmp|delayed_gmp|imp",
        conda:
            "../../envs/prunelens.yaml"
        threads: 1
        resources:
            **stage_resources(
                "fit_linear_head",
                runtime=job_runtime(contrastive_images("head", len(block)), 0.1, 2.5),
                mem_mb=TRAIN_MEM_MB + 200 * len(block),
            ),
        params:
            seeds=block,
            hp=contrastive_hp("head"),
            augment=config["sup"]["augment"],
            norm=NORM,
            gmp=head_gmp_params,
            precision=config["precision"],
            tensorboard=tensorboard_dirs("fit_linear_head", block),
        script:
            "../scripts/fit_linear_head.py"


rule prune_oneshot:
    input:
        data=PREPARED,
        dense=DENSE_MODEL,
    output:
        model=OS_MODEL,
        metrics=OS_METRICS,
        curves=OS_CURVES,
    log:
        "results/logs/prune_oneshot/{method}/{schedule}/s{sparsity}/seed{seed}.log",
    wildcard_constraints:
        schedule=POST_TRAINING,
        sparsity=r"[1-9]\d*",
        seed=SOLO_SEED,
    conda:
        "../../envs/prunelens.yaml"
    threads: 1
    resources:
        **job_resources(
            runtime=job_runtime(config["oneshot"]["epochs"] * N_TRAIN, 0.3, 8.5),
            mem_mb=TRAIN_MEM_MB,
        ),
    params:
        seeds=one_seed,
        hp=ONESHOT_HP,
        pruner=pruner_options,
        augment=config["sup"]["augment"],
        norm=NORM,
        precision=config["precision"],
        tensorboard=tensorboard_dirs("prune_oneshot"),
    script:
        "../scripts/prune_oneshot.py"


for block in STACKED_BLOCKS:

    rule:
        name:
            f"prune_oneshot_seeds{block[0]}_{block[-1]}"
        input:
            data=PREPARED,
            dense=per_seed(DENSE_MODEL, block),
        output:
            model=per_seed(OS_MODEL, block),
            metrics=per_seed(OS_METRICS, block),
            curves=per_seed(OS_CURVES, block),
        log:
            f"results/logs/prune_oneshot/{{method}}/{{schedule}}/s{{sparsity}}/seeds{block[0]}-{block[-1]}.log",
        wildcard_constraints:
            schedule=POST_TRAINING,
            sparsity=r"[1-9]\d*",
        conda:
            "../../envs/prunelens.yaml"
        threads: 1
        resources:
            **stage_resources(
                "prune_oneshot",
                runtime=job_runtime(
                    len(block) * config["oneshot"]["epochs"] * N_TRAIN, 0.3, 8.5
                ),
                mem_mb=TRAIN_MEM_MB + 200 * len(block),
            ),
        params:
            seeds=block,
            hp=ONESHOT_HP,
            pruner=pruner_options,
            augment=config["sup"]["augment"],
            norm=NORM,
            precision=config["precision"],
            tensorboard=tensorboard_dirs("prune_oneshot", block),
        script:
            "../scripts/prune_oneshot.py"


# IMP: one job per seed trains every IMP sparsity of its method, the rounds
# passing through the lower targets on their way to the highest; its
# TensorBoard run (every round) is named by the highest. Sup:
if SUP_IMP:

    rule train_imp:
        input:
            data=PREPARED,
        output:
            model=expand(IMP_MODEL, sparsity=SUP_IMP),
            metrics=expand(IMP_METRICS, sparsity=SUP_IMP),
            curves=expand(IMP_CURVES, sparsity=SUP_IMP),
        log:
            "results/logs/train_imp/sup/imp/seed{seed}.log",
        wildcard_constraints:
            seed=SOLO_SEED,
        conda:
            "../../envs/prunelens.yaml"
        threads: 1
        resources:
            **job_resources(
                runtime=job_runtime(imp_epochs("sup") * N_TRAIN, 0.3, 7.5),
                mem_mb=TRAIN_MEM_MB,
            ),
        params:
            seeds=one_seed,
            sparsities=SUP_IMP,
            arch=ARCH,
            hp=config["sup"],
            norm=NORM,
            imp=config["imp"],
            precision=config["precision"],
            tensorboard=tensorboard_dirs("train_imp", **imp_tensorboard("sup")),
        script:
            "../scripts/train_imp.py"

    for block in STACKED_BLOCKS:

        rule:
            name:
                f"train_imp_seeds{block[0]}_{block[-1]}"
            input:
                data=PREPARED,
            output:
                model=[
                    p
                    for s in SUP_IMP
                    for p in per_seed(IMP_MODEL.format(sparsity=s), block)
                ],
                metrics=[
                    p
                    for s in SUP_IMP
                    for p in per_seed(IMP_METRICS.format(sparsity=s), block)
                ],
                curves=[
                    p
                    for s in SUP_IMP
                    for p in per_seed(IMP_CURVES.format(sparsity=s), block)
                ],
            log:
                f"results/logs/train_imp/sup/imp/seeds{block[0]}-{block[-1]}.log",
            conda:
                "../../envs/prunelens.yaml"
            threads: 1
            resources:
                **stage_resources(
                    "train_imp",
                    runtime=job_runtime(
                        len(block) * imp_epochs("sup") * N_TRAIN, 0.3, 7.5
                    ),
                    mem_mb=TRAIN_MEM_MB + 200 * len(block),
                ),
            params:
                seeds=block,
                sparsities=SUP_IMP,
                arch=ARCH,
                hp=config["sup"],
                norm=NORM,
                imp=config["imp"],
                precision=config["precision"],
                tensorboard=tensorboard_dirs(
                    "train_imp", block, **imp_tensorboard("sup")
                ),
            script:
                "../scripts/train_imp.py"


# SCL and SimCLR: IMP over the pre-training, one encoder.pt per sparsity (the
# linear heads: rule fit_linear_head, schedule imp).
if CONTRASTIVE_IMP:

    rule pretrain_imp:
        input:
            data=PREPARED,
        output:
            encoder=expand(IMP_ENCODER, sparsity=CONTRASTIVE_IMP_SPARSITIES),
            curves=expand(IMP_ENCODER_CURVES, sparsity=CONTRASTIVE_IMP_SPARSITIES),
        log:
            "results/logs/pretrain_imp/{method}/imp/seed{seed}.log",
        wildcard_constraints:
            method="|".join(CONTRASTIVE_IMP),
            seed=SOLO_SEED,
        conda:
            "../../envs/prunelens.yaml"
        threads: 1
        resources:
            **job_resources(
                runtime=job_runtime(
                    lambda wildcards: imp_epochs(wildcards.method) * N_TRAIN, 0.45, 15
                ),
                mem_mb=pretrain_mem_mb(),
            ),
        params:
            seeds=one_seed,
            sparsities=lambda wildcards: imp_sparsities(wildcards.method),
            arch=ARCH,
            hp=contrastive_hp("pretrain"),
            norm=NORM,
            imp=config["imp"],
            precision=config["precision"],
            tensorboard=tensorboard_dirs(
                "pretrain_imp", **imp_tensorboard(CONTRASTIVE_IMP[0], method=None)
            ),
        script:
            "../scripts/pretrain_imp.py"

    for block in STACKED_BLOCKS:

        rule:
            name:
                f"pretrain_imp_seeds{block[0]}_{block[-1]}"
            input:
                data=PREPARED,
            output:
                encoder=[
                    p
                    for s in CONTRASTIVE_IMP_SPARSITIES
                    for p in per_seed(IMP_ENCODER.format(sparsity=s), block)
                ],
                curves=[
                    p
                    for s in CONTRASTIVE_IMP_SPARSITIES
                    for p in per_seed(IMP_ENCODER_CURVES.format(sparsity=s), block)
                ],
            log:
                f"results/logs/pretrain_imp/{{method}}/imp/seeds{block[0]}-{block[-1]}.log",
            wildcard_constraints:
                method="|".join(CONTRASTIVE_IMP),
            conda:
                "../../envs/prunelens.yaml"
            threads: 1
            resources:
                **stage_resources(
                    "pretrain_imp",
                    runtime=job_runtime(
                        lambda wildcards, n=len(block): (
                            n * imp_epochs(wildcards.method) * N_TRAIN
                        ),
                        0.45,
                        15,
                    ),
                    mem_mb=pretrain_mem_mb(len(block)),
                ),
            params:
                seeds=block,
                sparsities=lambda wildcards: imp_sparsities(wildcards.method),
                arch=ARCH,
                hp=contrastive_hp("pretrain"),
                norm=NORM,
                imp=config["imp"],
                precision=config["precision"],
                tensorboard=tensorboard_dirs(
                    "pretrain_imp",
                    block,
                    **imp_tensorboard(CONTRASTIVE_IMP[0], method=None),
                ),
            script:
                "../scripts/pretrain_imp.py"
