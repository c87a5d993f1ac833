from bioprune.smk import run_script
from bioprune.stages import write_text

sm = snakemake  # noqa: F821
run_script(sm, lambda: write_text(sm.output[0], sm.params.text))
