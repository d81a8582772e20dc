# Training: Sup from scratch (dense, or GMP during training); SCL as SupCon
# pre-training (dense, GMP or delayed GMP) then a linear head on the frozen
# encoder; One-Shot (global magnitude pruning of a dense model, then
# fine-tuning) for both. Each job checkpoints resume.pt beside its first
# output every epoch and resumes from it when its settings match.
#
# Every stage has a per-seed rule and, with seeds_per_job > 1, one rule per
# block of seeds (named <stage>_seeds<first>_<last>) whose job trains the
# block's models together (prunelens.stacked) and writes each seed the files
# of the per-seed rule. Block rules take the resources that a profile or
# --set-resources gives their stage's per-seed rule. device, compile and
# eval_batch_size come as resources (common.smk, UNTRACKED), not params.

SUP_MODEL = "results/models/sup/{schedule}/s{sparsity}/seed{seed}/model.pt"
SUP_METRICS = "results/models/sup/{schedule}/s{sparsity}/seed{seed}/metrics.json"
ENCODER = "results/models/scl/{schedule}/s{sparsity}/seed{seed}/encoder.pt"
SCL_MODEL = "results/models/scl/{schedule}/s{sparsity}/seed{seed}/model.pt"
SCL_METRICS = "results/models/scl/{schedule}/s{sparsity}/seed{seed}/metrics.json"
DENSE_MODEL = "results/models/{method}/dense/s0/seed{seed}/model.pt"
OS_MODEL = "results/models/{method}/oneshot/s{sparsity}/seed{seed}/model.pt"
OS_METRICS = "results/models/{method}/oneshot/s{sparsity}/seed{seed}/metrics.json"


rule train_supervised:
    input:
        data=PREPARED,
    output:
        model=SUP_MODEL,
        metrics=SUP_METRICS,
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
        arch=config["model"],
        hp=config["sup"],
        norm=NORM,
        gmp=gmp_params("sup"),
        precision=config["precision"],
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
            arch=config["model"],
            hp=config["sup"],
            norm=NORM,
            gmp=gmp_params("sup"),
            precision=config["precision"],
        script:
            "../scripts/train_supervised.py"


rule pretrain_supcon:
    input:
        data=PREPARED,
    output:
        encoder=ENCODER,
    log:
        "results/logs/pretrain_supcon/scl/{schedule}/s{sparsity}/seed{seed}.log",
    wildcard_constraints:
        schedule="dense|gmp|delayed_gmp",
        seed=SOLO_SEED,
    conda:
        "../../envs/prunelens.yaml"
    threads: 1
    resources:
        **job_resources(
            runtime=job_runtime(
                config["scl"]["pretrain"]["epochs"] * N_TRAIN, 0.45, 15
            ),
            mem_mb=TRAIN_MEM_MB + 4 * config["scl"]["pretrain"]["batch_size"],
        ),
    params:
        seeds=one_seed,
        arch=config["model"],
        hp=config["scl"]["pretrain"],
        norm=NORM,
        gmp=gmp_params("scl"),
        precision=config["precision"],
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
        log:
            f"results/logs/pretrain_supcon/scl/{{schedule}}/s{{sparsity}}/seeds{block[0]}-{block[-1]}.log",
        wildcard_constraints:
            schedule="dense|gmp|delayed_gmp",
        conda:
            "../../envs/prunelens.yaml"
        threads: 1
        resources:
            **stage_resources(
                "pretrain_supcon",
                runtime=job_runtime(
                    len(block) * config["scl"]["pretrain"]["epochs"] * N_TRAIN,
                    0.45,
                    15,
                ),
                mem_mb=TRAIN_MEM_MB
                + len(block) * (200 + 4 * config["scl"]["pretrain"]["batch_size"]),
            ),
        params:
            seeds=block,
            arch=config["model"],
            hp=config["scl"]["pretrain"],
            norm=NORM,
            gmp=gmp_params("scl"),
            precision=config["precision"],
        script:
            "../scripts/pretrain_supcon.py"


rule fit_linear_head:
    input:
        data=PREPARED,
        encoder=ENCODER,
    output:
        model=SCL_MODEL,
        metrics=SCL_METRICS,
    log:
        "results/logs/fit_linear_head/scl/{schedule}/s{sparsity}/seed{seed}.log",
    wildcard_constraints:
        schedule="dense|gmp|delayed_gmp",
        seed=SOLO_SEED,
    conda:
        "../../envs/prunelens.yaml"
    threads: 1
    resources:
        **job_resources(
            runtime=job_runtime(config["scl"]["head"]["epochs"] * N_TRAIN, 0.1, 2.5),
            mem_mb=TRAIN_MEM_MB,
        ),
    params:
        seeds=one_seed,
        hp=config["scl"]["head"],
        augment=config["sup"]["augment"],
        norm=NORM,
        gmp=head_gmp_params,
        precision=config["precision"],
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
        log:
            f"results/logs/fit_linear_head/scl/{{schedule}}/s{{sparsity}}/seeds{block[0]}-{block[-1]}.log",
        wildcard_constraints:
            schedule="dense|gmp|delayed_gmp",
        conda:
            "../../envs/prunelens.yaml"
        threads: 1
        resources:
            **stage_resources(
                "fit_linear_head",
                runtime=job_runtime(
                    len(block) * config["scl"]["head"]["epochs"] * N_TRAIN, 0.1, 2.5
                ),
                mem_mb=TRAIN_MEM_MB + 200 * len(block),
            ),
        params:
            seeds=block,
            hp=config["scl"]["head"],
            augment=config["sup"]["augment"],
            norm=NORM,
            gmp=head_gmp_params,
            precision=config["precision"],
        script:
            "../scripts/fit_linear_head.py"


rule prune_oneshot:
    input:
        data=PREPARED,
        dense=DENSE_MODEL,
    output:
        model=OS_MODEL,
        metrics=OS_METRICS,
    log:
        "results/logs/prune_oneshot/{method}/oneshot/s{sparsity}/seed{seed}.log",
    wildcard_constraints:
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
        hp=config["oneshot"],
        augment=config["sup"]["augment"],
        norm=NORM,
        precision=config["precision"],
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
        log:
            f"results/logs/prune_oneshot/{{method}}/oneshot/s{{sparsity}}/seeds{block[0]}-{block[-1]}.log",
        wildcard_constraints:
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
            hp=config["oneshot"],
            augment=config["sup"]["augment"],
            norm=NORM,
            precision=config["precision"],
        script:
            "../scripts/prune_oneshot.py"
