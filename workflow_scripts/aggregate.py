from bioprune.report.tables import aggregate
from bioprune.smk import run_script

sm = snakemake  # noqa: F821
run_script(sm, lambda: aggregate(list(sm.input), sm.output.summary, sm.output.table, sm.output.verdict))
