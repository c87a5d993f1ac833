from bioprune.report.tables import plot_scores
from bioprune.smk import run_script

sm = snakemake  # noqa: F821
run_script(sm, lambda: plot_scores(sm.input.scores, dict(zip(sm.params.names, sm.input.selections)),
                                   sm.output.hist, sm.output.length))
