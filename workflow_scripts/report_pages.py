from bioprune.report.pages import write_pages
from bioprune.smk import run_script

sm = snakemake  # noqa: F821
run_script(sm, lambda: write_pages(sm.input.table, sm.input.verdict, sm.input.ledger, sm.input.leakage,
                                   dict(sm.output.items())))
