from bioprune import stages
from bioprune.smk import run_script

sm = snakemake  # noqa: F821
run_script(sm, lambda: stages.ensemble_scores(list(sm.input), sm.output[0], sm.params.ensemble))
