# The paper's tables, ours beside the paper's numbers.


rule table1:
    input:
        table1_inputs,
        paper=PAPER_TABLES,
    output:
        csv="results/tables/table1.csv",
        md="results/tables/table1.md",
        tex="results/tables/table1.tex",
    log:
        "results/logs/table1.log",
    conda:
        "../../envs/prunelens.yaml"
    params:
        cells=table1_cells(),
    script:
        "../scripts/table1.py"


rule all_tables:
    input:
        rules.table1.output,
    localrule: True
