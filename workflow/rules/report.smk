# The paper's tables and figures (ours beside the paper's numbers), each also
# registered for the HTML report (`snakemake --report results/report.html`).


rule table1:
    input:
        table1_inputs,
    output:
        csv=report(
            "results/tables/table1.csv",
            caption="../report/table1.rst",
            category="Tables",
        ),
        md="results/tables/table1.md",
        tex="results/tables/table1.tex",
    log:
        "results/logs/table1.log",
    conda:
        "../../envs/prunelens.yaml"
    resources:
        mem_mb=3000 + N_TEST // 2,
    params:
        paper=PAPER,
        cells=table1_cells(),
        tie_break=config["pie"]["tie_break"],
        bootstrap={k: config["claims"][k] for k in BOOTSTRAP_KEYS},
    script:
        "../scripts/table1.py"


rule sparsity_table:
    input:
        [p for c in sparsity_cells() for p in c["metrics"]],
    output:
        csv="results/tables/sparsity.csv",
        md="results/tables/sparsity.md",
        html=report(
            "results/tables/sparsity.html",
            caption="../report/sparsity.rst",
            category="Tables",
        ),
    log:
        "results/logs/sparsity_table.log",
    conda:
        "../../envs/prunelens.yaml"
    params:
        cells=sparsity_cells(),
        tolerance_pp=SPARSITY_TOLERANCE_PP,
    script:
        "../scripts/sparsity_table.py"


rule claims:
    input:
        claims_inputs,
        sparsity="results/tables/sparsity.csv",  # its flag joins the note
    output:
        csv="results/tables/claims.csv",
        md="results/tables/claims.md",
        tex="results/tables/claims.tex",
        html=report(
            "results/tables/claims.html",
            caption="../report/claims.rst",
            category="Claims",
        ),
    log:
        "results/logs/claims.log",
    conda:
        "../../envs/prunelens.yaml"
    resources:
        mem_mb=3000 + N_TEST // 2,
    params:
        paper=PAPER,
        populations=claims_populations(),
        grid={"methods": config["methods"], "schedules": config["schedules"]},
        depth_cells=depth_cells(),
        tie_break=config["pie"]["tie_break"],
        pd_column="pd" if ANALYSIS["depth"]["definition"] == "corti" else "pd_baldock",
        claims=config["claims"],
        tolerance_pp=SPARSITY_TOLERANCE_PP,
    script:
        "../scripts/claims.py"


rule table3:
    input:
        list(table3_pies().values()),
        data=PREPARED,  # the test split the PIE tables cover
    output:
        csv=report(
            "results/tables/table3.csv",
            caption="../report/table3.rst",
            category="Tables",
        ),
        md="results/tables/table3.md",
        tex="results/tables/table3.tex",
    log:
        "results/logs/table3.log",
    conda:
        "../../envs/prunelens.yaml"
    params:
        paper=PAPER,
        pies=table3_pies(),
    script:
        "../scripts/table3.py"


rule table4:
    input:
        cell_paths(qscore_cells(*QSCORE_CONTRASTIVE), "scores", "pie"),
    output:
        csv=report(
            "results/tables/table4.csv",
            caption="../report/table4.rst",
            category="Tables",
        ),
        md="results/tables/table4.md",
        tex="results/tables/table4.tex",
    log:
        "results/logs/table4.log",
    conda:
        "../../envs/prunelens.yaml"
    params:
        paper=PAPER,
        cells=qscore_cells(*QSCORE_CONTRASTIVE),
        method="scl",  # the paper's groups the absent-cells note names
        title=f"Table 4: representation quality of {QSCORE_CONTRASTIVE_LABELS or 'contrastive'} models (Q, Z, L1)",
        paper_table="table4",
    script:
        "../scripts/qscore_table.py"


rule table5:
    input:
        cell_paths(qscore_cells("sup"), "scores", "pie"),
    output:
        csv=report(
            "results/tables/table5.csv",
            caption="../report/table5.rst",
            category="Tables",
        ),
        md="results/tables/table5.md",
        tex="results/tables/table5.tex",
    log:
        "results/logs/table5.log",
    conda:
        "../../envs/prunelens.yaml"
    params:
        paper=PAPER,
        cells=qscore_cells("sup"),
        method="sup",
        title="Table 5: representation quality of Sup models (Q, Z, L1)",
        paper_table="table5",
    script:
        "../scripts/qscore_table.py"


rule table6:
    input:
        cell_paths(depth_cells(), "scores", "pie"),
    output:
        csv=report(
            "results/tables/table6.csv",
            caption="../report/table6.rst",
            category="Tables",
        ),
        md="results/tables/table6.md",
        tex="results/tables/table6.tex",
    log:
        "results/logs/table6.log",
    conda:
        "../../envs/prunelens.yaml"
    params:
        paper=PAPER,
        cells=depth_cells(),
        definition=ANALYSIS["depth"]["definition"],
    script:
        "../scripts/table6.py"


rule pie_overlap:
    input:
        cell_paths(overlap_cells(), "sup", "scl"),
    output:
        csv=report(
            "results/tables/pie_overlap.csv",
            caption="../report/pie_overlap.rst",
            category="Tables",
        ),
        md="results/tables/pie_overlap.md",
        tex="results/tables/pie_overlap.tex",
    log:
        "results/logs/pie_overlap.log",
    conda:
        "../../envs/prunelens.yaml"
    params:
        cells=overlap_cells(),
    script:
        "../scripts/pie_overlap.py"


rule fig1:
    input:
        "results/umap/embeddings.csv",
    output:
        pdf="results/figures/fig1.pdf",
        png=report(
            "results/figures/fig1.png",
            caption="../report/fig1.rst",
            category="Figures",
        ),
    log:
        "results/logs/fig1.log",
    conda:
        "../../envs/prunelens.yaml"
    params:
        dataset=DATASET,  # class names (CIFAR-100: by superclass)
        methods=config["methods"],
        columns=FIGURE_COLUMNS,
        sparsity=trained_sparsity(ANALYSIS["fig1_sparsity"]),
        requested=ANALYSIS["fig1_sparsity"],
    script:
        "../scripts/fig1.py"


rule fig2:
    input:
        cell_paths(scatter_cells("q"), "dense", "sparse", "pie"),
    output:
        pdf="results/figures/fig2.pdf",
        png=report(
            "results/figures/fig2.png",
            caption="../report/fig2.rst",
            category="Figures",
        ),
    log:
        "results/logs/fig2.log",
    conda:
        "../../envs/prunelens.yaml"
    params:
        cells=scatter_cells("q"),
        column="q",
        axis_label="Q-Score",
        title="Figure 2: Q-Score of each test image, dense versus sparse models",
        sparsity=SCATTER_SPARSITY,
        requested=90,
    script:
        "../scripts/fig_scatter.py"


rule fig3:
    input:
        cell_paths(scatter_cells("pd"), "dense", "sparse", "pie"),
    output:
        pdf="results/figures/fig3.pdf",
        png=report(
            "results/figures/fig3.png",
            caption="../report/fig3.rst",
            category="Figures",
        ),
    log:
        "results/logs/fig3.log",
    conda:
        "../../envs/prunelens.yaml"
    params:
        cells=scatter_cells("pd"),
        column="pd" if ANALYSIS["depth"]["definition"] == "corti" else "pd_baldock",
        axis_label="Prediction depth",
        title="Figure 3: prediction depth of each test image, dense versus sparse",
        sparsity=SCATTER_SPARSITY,
        requested=90,
    script:
        "../scripts/fig_scatter.py"


rule fig4:
    input:
        list(pie_tables(["oneshot"]).values()),
    output:
        pdf="results/figures/fig4.pdf",
        png=report(
            "results/figures/fig4.png",
            caption="../report/fig4.rst",
            category="Figures",
        ),
    log:
        "results/logs/fig4.log",
    conda:
        "../../envs/prunelens.yaml"
    params:
        dataset=DATASET,  # class names (CIFAR-100: by superclass)
        pies=pie_tables(["oneshot"]),
        rows=pie_class_rows(["oneshot"]),
        title="Figure 4: PIEs per class after One-Shot pruning (strong: shared by Sup and SCL)",
        sharey=False,
    script:
        "../scripts/fig_pies.py"


rule fig5:
    input:
        "results/umap/embeddings.csv",
    output:
        pdf="results/figures/fig5.pdf",
        png=report(
            "results/figures/fig5.png",
            caption="../report/fig5.rst",
            category="Figures",
        ),
    log:
        "results/logs/fig5.log",
    conda:
        "../../envs/prunelens.yaml"
    params:
        methods=config["methods"],
        columns=FIGURE_COLUMNS,
        dataset=DATASET,  # class names (CIFAR-100: by superclass)
        sparsities=umap_sparsities(),
    script:
        "../scripts/fig5.py"


rule fig6:
    input:
        **gallery_pies(),
        data=PREPARED,
    output:
        pdf="results/figures/fig6.pdf",
        png=report(
            "results/figures/fig6.png",
            caption="../report/fig6.rst",
            category="Figures",
        ),
    log:
        "results/logs/fig6.log",
    conda:
        "../../envs/prunelens.yaml"
    params:
        schedules=list(gallery_pies()),
        method=GALLERY_METHOD,
        sparsity=GALLERY_SPARSITY,
        requested=ANALYSIS["gallery_sparsity"],
        per_group=8,
    script:
        "../scripts/fig6.py"


rule fig7:
    input:
        list(pie_tables(FIGURE_SCHEDULES).values()),
    output:
        pdf="results/figures/fig7.pdf",
        png=report(
            "results/figures/fig7.png",
            caption="../report/fig7.rst",
            category="Figures",
        ),
    log:
        "results/logs/fig7.log",
    conda:
        "../../envs/prunelens.yaml"
    params:
        dataset=DATASET,  # class names (CIFAR-100: by superclass)
        pies=pie_tables(FIGURE_SCHEDULES),
        rows=pie_class_rows(FIGURE_SCHEDULES),
        title="Figure 7: PIEs per class and sparsity (strong: shared by Sup and SCL)",
        sharey="row",
    script:
        "../scripts/fig_pies.py"


# Training curves, one figure per (method, schedule), all in one job (one
# interpreter and matplotlib start instead of one per figure).
rule fig_curves:
    input:
        curve_files(),
    output:
        png=[
            report(
                f"results/figures/curves/{m}/{sc}.png",
                caption="../report/curves.rst",
                category="Training curves",
                subcategory=METHOD_LABELS[m],
                labels={"method": METHOD_LABELS[m], "schedule": SCHEDULE_LABELS[sc]},
            )
            for m, sc in CURVE_FAMILIES
        ],
        pdf=[f"results/figures/curves/{m}/{sc}.pdf" for m, sc in CURVE_FAMILIES],
    log:
        "results/logs/fig_curves.log",
    conda:
        "../../envs/prunelens.yaml"
    params:
        families=[
            {"method": m, "schedule": sc, "panels": curve_panels(m, sc)}
            for m, sc in CURVE_FAMILIES
        ],
    script:
        "../scripts/fig_curves.py"


# The run's evidence in a few MB (README "Fidelity scale"): not part of `all`.
rule reference:
    input:
        claims_inputs,
    output:
        arrays="results/reference/arrays.npz",
        meta="results/reference/meta.json",
    log:
        "results/logs/reference.log",
    conda:
        "../../envs/prunelens.yaml"
    params:
        populations=claims_populations(),
        settings={
            "grid": {"methods": config["methods"], "schedules": config["schedules"]},
            "depth_cells": depth_cells(),
            "tie_break": config["pie"]["tie_break"],
            "pd_column": (
                "pd" if ANALYSIS["depth"]["definition"] == "corti" else "pd_baldock"
            ),
            "claims": config["claims"],
            "seeds": SEEDS,
        },
    script:
        "../scripts/reference.py"


rule all_tables:
    input:
        expand(
            "results/tables/{table}.{ext}",
            table=[
                "claims",
                "table1",
                "table3",
                "table4",
                "table5",
                "table6",
                "pie_overlap",
            ],
            ext=["csv", "md", "tex"],
        ),
        expand("results/tables/sparsity.{ext}", ext=["csv", "md", "html"]),
    localrule: True


rule all_figures:
    input:
        expand("results/figures/fig{n}.{ext}", n=range(1, 8), ext=["pdf", "png"]),
        rules.fig_curves.output,
    localrule: True
