# Evaluation of trained models. One job per population (method, schedule,
# sparsity) rather than per model: torch and the data load once, and a paper
# run is a few hundred jobs instead of thousands.


rule predict:
    input:
        data=PREPARED,
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
    resources:
        **job_resources(
            runtime=job_runtime(len(SEEDS) * N_TEST, 0.05, 1.5),
            mem_mb=2000 + N_TEST // 10,
        ),
    params:
        norm=NORM,
    script:
        "../scripts/predict.py"


rule probe_depth:
    input:
        data=PREPARED,
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
        **job_resources(
            runtime=job_runtime(len(DEPTH_SEEDS) * (N_TRAIN + N_TEST), 0.1, 5),
            mem_mb=3000 + N_TRAIN // 20,
        ),
    params:
        # both definitions are always computed: `definition` is for the tables
        k=config["analysis"]["depth"]["k"],
        probe_data=config["analysis"]["depth"]["probe_data"],
        augment=config["sup"]["augment"],
        norm=NORM,
        seeds=DEPTH_SEEDS,
    script:
        "../scripts/probe_depth.py"
