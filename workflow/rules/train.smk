# Training: Sup from scratch (dense, or GMP during training); SCL as SupCon
# pre-training (dense, GMP or delayed GMP) then a linear head on the frozen
# encoder; One-Shot (global magnitude pruning of a dense model, then
# fine-tuning) for both. Each job checkpoints a resume file beside its outputs
# every epoch and resumes from it.


rule train_supervised:
    input:
        data="results/data/cifar10.npz",
    output:
        model="results/models/sup/{schedule}/s{sparsity}/seed{seed}/model.pt",
        metrics="results/models/sup/{schedule}/s{sparsity}/seed{seed}/metrics.json",
    log:
        "results/logs/train_supervised/sup/{schedule}/s{sparsity}/seed{seed}.log",
    wildcard_constraints:
        schedule="dense|gmp",
        # seeds of a stacked block (seeds_per_job > 1) belong to its rule below
        seed=seed_pattern_excluding(STACKED_SEEDS),
    conda:
        "../../envs/prunelens.yaml"
    threads: 1
    resources:
        runtime=job_runtime(config["sup"]["epochs"] * N_TRAIN, 0.3, 7.5),
        mem_mb=TRAIN_MEM_MB,
    params:
        arch=config["model"],
        hp=config["sup"],
        norm={"mean": config["data"]["mean"], "std": config["data"]["std"]},
        gmp=gmp_params("sup"),
        device=config["device"],
        precision=config["precision"],
        eval_batch_size=config["eval_batch_size"],
    script:
        "../scripts/train_supervised.py"


# seeds_per_job > 1: one rule per block of seeds, each job training its seeds
# together (prunelens.stacked) and writing the same per-seed files as above.
for block in STACKED_BLOCKS:

    rule:
        name:
            f"train_supervised_seeds{block[0]}_{block[-1]}"
        input:
            data="results/data/cifar10.npz",
        output:
            model=[
                f"results/models/sup/{{schedule}}/s{{sparsity}}/seed{s}/model.pt"
                for s in block
            ],
            metrics=[
                f"results/models/sup/{{schedule}}/s{{sparsity}}/seed{s}/metrics.json"
                for s in block
            ],
        log:
            f"results/logs/train_supervised/sup/{{schedule}}/s{{sparsity}}/seeds{block[0]}-{block[-1]}.log",
        wildcard_constraints:
            schedule="dense|gmp",
        conda:
            "../../envs/prunelens.yaml"
        threads: 1
        # profiles name rules to give them GPUs; these rules' names depend on
        # the seeds, so they ask for one themselves when the device is cuda
        resources:
            runtime=job_runtime(
                len(block) * config["sup"]["epochs"] * N_TRAIN, 0.3, 7.5
            ),
            mem_mb=TRAIN_MEM_MB + 200 * len(block),
            gpu=1 if config["device"] == "cuda" else 0,
        params:
            seeds=block,
            arch=config["model"],
            hp=config["sup"],
            norm={"mean": config["data"]["mean"], "std": config["data"]["std"]},
            gmp=gmp_params("sup"),
            device=config["device"],
            precision=config["precision"],
            compile=config["compile"],
            eval_batch_size=config["eval_batch_size"],
        script:
            "../scripts/train_supervised_block.py"


rule pretrain_supcon:
    input:
        data="results/data/cifar10.npz",
    output:
        "results/models/scl/{schedule}/s{sparsity}/seed{seed}/encoder.pt",
    log:
        "results/logs/pretrain_supcon/scl/{schedule}/s{sparsity}/seed{seed}.log",
    wildcard_constraints:
        schedule="dense|gmp|delayed_gmp",
    conda:
        "../../envs/prunelens.yaml"
    threads: 1
    resources:
        runtime=job_runtime(config["scl"]["pretrain"]["epochs"] * N_TRAIN, 0.45, 15),
        mem_mb=TRAIN_MEM_MB + 4 * config["scl"]["pretrain"]["batch_size"],
    params:
        arch=config["model"],
        hp=config["scl"]["pretrain"],
        norm={"mean": config["data"]["mean"], "std": config["data"]["std"]},
        gmp=gmp_params("scl"),
        device=config["device"],
        precision=config["precision"],
    script:
        "../scripts/pretrain_supcon.py"


rule fit_linear_head:
    input:
        data="results/data/cifar10.npz",
        encoder="results/models/scl/{schedule}/s{sparsity}/seed{seed}/encoder.pt",
    output:
        model="results/models/scl/{schedule}/s{sparsity}/seed{seed}/model.pt",
        metrics="results/models/scl/{schedule}/s{sparsity}/seed{seed}/metrics.json",
    log:
        "results/logs/fit_linear_head/scl/{schedule}/s{sparsity}/seed{seed}.log",
    wildcard_constraints:
        schedule="dense|gmp|delayed_gmp",
    conda:
        "../../envs/prunelens.yaml"
    threads: 1
    resources:
        runtime=job_runtime(config["scl"]["head"]["epochs"] * N_TRAIN, 0.1, 2.5),
        mem_mb=TRAIN_MEM_MB,
    params:
        hp=config["scl"]["head"],
        augment=config["sup"]["augment"],
        norm={"mean": config["data"]["mean"], "std": config["data"]["std"]},
        gmp=head_gmp_params,
        device=config["device"],
        precision=config["precision"],
        eval_batch_size=config["eval_batch_size"],
    script:
        "../scripts/fit_linear_head.py"


rule prune_oneshot:
    input:
        data="results/data/cifar10.npz",
        dense="results/models/{method}/dense/s0/seed{seed}/model.pt",
    output:
        model="results/models/{method}/oneshot/s{sparsity}/seed{seed}/model.pt",
        metrics="results/models/{method}/oneshot/s{sparsity}/seed{seed}/metrics.json",
    log:
        "results/logs/prune_oneshot/{method}/oneshot/s{sparsity}/seed{seed}.log",
    wildcard_constraints:
        sparsity=r"[1-9]\d*",
    conda:
        "../../envs/prunelens.yaml"
    threads: 1
    resources:
        runtime=job_runtime(config["oneshot"]["epochs"] * N_TRAIN, 0.3, 8.5),
        mem_mb=TRAIN_MEM_MB,
    params:
        hp=config["oneshot"],
        augment=config["sup"]["augment"],
        norm={"mean": config["data"]["mean"], "std": config["data"]["std"]},
        device=config["device"],
        precision=config["precision"],
        eval_batch_size=config["eval_batch_size"],
    script:
        "../scripts/prune_oneshot.py"
