from bioprune.report.tables import write_versions
from bioprune.smk import run_script

sm = snakemake  # noqa: F821
run_script(sm, lambda: write_versions(sm.output[0]))
