# Analyses across populations of models: PIE voting, Q-Score, prediction
# depth, UMAP.


rule vote_pies:
    input:
        dense=population("dense", 0),
        pruned=population(None, None),
    output:
        "results/pie/{method}/{schedule}/s{sparsity}.csv",
    log:
        "results/logs/vote_pies/{method}/{schedule}/s{sparsity}.log",
    wildcard_constraints:
        schedule="|".join(PRUNED_SCHEDULES),
    conda:
        "../../envs/prunelens.yaml"
    params:
        tie_break=config["pie"]["tie_break"],
    script:
        "../scripts/vote_pies.py"


rule score_q:
    input:
        population(None, None),
    output:
        "results/scores/q/{method}/{schedule}/s{sparsity}.csv",
    log:
        "results/logs/score_q/{method}/{schedule}/s{sparsity}.log",
    conda:
        "../../envs/prunelens.yaml"
    # Unused, but profiles/slurm groups score_q with predict and probe_depth,
    # and Snakemake refuses a group whose jobs disagree on a string resource.
    resources:
        **job_resources(),
    script:
        "../scripts/score_q.py"


# One job for every embedding: umap-learn compiles its numba kernels once per
# process, which costs far more than embedding one more population.
rule embed_umap:
    input:
        unpack(umap_inputs),
    output:
        "results/umap/embeddings.csv",
    log:
        "results/logs/embed_umap.log",
    conda:
        "../../envs/prunelens.yaml"
    resources:
        runtime=job_runtime(len(umap_cells()) * N_TEST, 30, 30, base=15),
        mem_mb=3000 + N_TEST // 5,
    params:
        umap=config["analysis"]["umap"],
        tie_break=config["pie"]["tie_break"],
        cells=umap_cells(),
    script:
        "../scripts/embed_umap.py"
