# Analyses across populations of models: PIE voting.


rule vote_pies:
    input:
        dense=population("dense", 0),
        pruned=population(None, None),
    output:
        "results/pie/{method}/{schedule}/s{sparsity}.csv",
    log:
        "results/logs/vote_pies/{method}/{schedule}/s{sparsity}.log",
    wildcard_constraints:
        schedule="gmp|delayed_gmp|oneshot",
    conda:
        "../../envs/prunelens.yaml"
    params:
        tie_break=config["pie"]["tie_break"],
    script:
        "../scripts/vote_pies.py"
