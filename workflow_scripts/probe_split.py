from bioprune import stages
from bioprune.smk import run_script

sm = snakemake  # noqa: F821
run_script(sm, lambda: stages.probe_split(sm.wildcards.task, sm.input[0], sm.output[0], sm.params.split, sm.threads))
