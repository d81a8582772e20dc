"""Rule claims: which of the paper's claims hold, with bootstrap CIs."""

from typing import TYPE_CHECKING

from prunelens.claims import claims_html, claims_table, claims_wide
from prunelens.runtime import atomic_path, log_to
from prunelens.tables import read_sparsity, sparsity_flag_note, write_table

if TYPE_CHECKING:
    from snakemake.script import snakemake

TITLE = "Claims of the paper: our estimate, its 95 % bootstrap CI and the verdict"
NOTE = (
    "holds: the CI lies wholly on the claimed side of the null; contradicted: "
    "wholly on the other; inconclusive: it contains the null; too few models: "
    "a population involved has fewer than 3 models (0: not in the grid)."
)

with log_to(snakemake.log[0], snakemake.output):
    p = snakemake.params
    long = claims_table(
        p.populations,
        grid=p.grid,
        depth_cells=p.depth_cells,
        paper=snakemake.params.paper,
        tie_break=p.tie_break,
        pd_column=p.pd_column,
        **p.claims,
    )
    wide = claims_wide(long)
    # a claim rests on models pruned as specified: say whether they were
    note = f"{NOTE} Per-tensor sparsity (sparsity.md): " + sparsity_flag_note(
        read_sparsity(snakemake.input.sparsity), tolerance_pp=p.tolerance_pp
    )
    write_table(
        long,
        wide,
        csv=snakemake.output.csv,
        md=snakemake.output.md,
        tex=snakemake.output.tex,
        title=TITLE,
        label="tab:claims",
        note=note,
    )
    with atomic_path(snakemake.output.html) as tmp:
        tmp.write_text(claims_html(wide, f"{TITLE}. {note}"))
