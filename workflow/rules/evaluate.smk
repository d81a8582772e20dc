# Evaluation of trained models. One job per population (method, schedule,
# sparsity) rather than per model: torch and the data load once, and a paper
# run is a few hundred jobs instead of thousands.


rule predict:
    input:
        data="results/data/cifar10.npz",
        models=expand(
            "results/models/{{method}}/{{schedule}}/s{{sparsity}}/seed{seed}/model.pt",
            seed=SEEDS,
        ),
    output:
        expand(
            "results/predictions/{{method}}/{{schedule}}/s{{sparsity}}/seed{seed}.npz",
            seed=SEEDS,
        ),
    log:
        "results/logs/predict/{method}/{schedule}/s{sparsity}.log",
    conda:
        "../../envs/prunelens.yaml"
    threads: 1
    # wall-time limit at paper scale: 10 min on a GPU, 18 min on one CPU core
    resources:
        runtime=lambda wc, threads, attempt: int(
            attempt
            * (
                10
                + len(SEEDS)
                * (config["data"]["subset_test"] or 10000)
                / 1000
                * (0.05 if config["device"] == "cuda" else 1.5 / threads)
                / 60
            )
        ),
        mem_mb=lambda wc: 2000 + (config["data"]["subset_test"] or 10000) // 10,
    params:
        norm={"mean": config["data"]["mean"], "std": config["data"]["std"]},
        device=config["device"],
        batch=config["eval_batch_size"],
    script:
        "../scripts/predict.py"


rule probe_depth:
    input:
        data="results/data/cifar10.npz",
        models=expand(
            "results/models/{{method}}/{{schedule}}/s{{sparsity}}/seed{seed}/model.pt",
            seed=DEPTH_SEEDS,
        ),
        predictions=expand(
            "results/predictions/{{method}}/{{schedule}}/s{{sparsity}}/seed{seed}.npz",
            seed=DEPTH_SEEDS,
        ),
    output:
        per_model=expand(
            "results/depth/{{method}}/{{schedule}}/s{{sparsity}}/seed{seed}.npz",
            seed=DEPTH_SEEDS,
        ),
        scores="results/scores/pd/{method}/{schedule}/s{sparsity}.csv",
    log:
        "results/logs/probe_depth/{method}/{schedule}/s{sparsity}.log",
    conda:
        "../../envs/prunelens.yaml"
    threads: 1
    resources:
        runtime=lambda wc, threads, attempt: int(
            attempt
            * (
                10
                + len(DEPTH_SEEDS)
                * (
                    (config["data"]["subset_train"] or 50000)
                    + (config["data"]["subset_test"] or 10000)
                )
                / 1000
                * (0.1 if config["device"] == "cuda" else 5 / threads)
                / 60
            )
        ),
        mem_mb=lambda wc: 3000 + (config["data"]["subset_train"] or 50000) // 20,
    params:
        depth=config["analysis"]["depth"],
        augment=config["sup"]["augment"],
        norm={"mean": config["data"]["mean"], "std": config["data"]["std"]},
        seeds=DEPTH_SEEDS,
        device=config["device"],
        batch=config["eval_batch_size"],
    script:
        "../scripts/probe_depth.py"
