# Evaluation: one predictions file per model over the prepared test split.


rule predict:
    input:
        data="results/data/cifar10.npz",
        model="results/models/{method}/{schedule}/s{sparsity}/seed{seed}/model.pt",
    output:
        "results/predictions/{method}/{schedule}/s{sparsity}/seed{seed}.npz",
    log:
        "results/logs/predict/{method}/{schedule}/s{sparsity}/seed{seed}.log",
    conda:
        "../../envs/prunelens.yaml"
    threads: 1
    params:
        norm={"mean": config["data"]["mean"], "std": config["data"]["std"]},
        device=config["device"],
        batch=config["eval_batch_size"],
    script:
        "../scripts/predict.py"
