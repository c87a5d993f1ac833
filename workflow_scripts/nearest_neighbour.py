from bioprune import stages
from bioprune.smk import run_script

sm = snakemake  # noqa: F821
run_script(sm, lambda: stages.nearest_neighbour(sm.output[0], sm.params.benchmark))
