from bioprune import stages
from bioprune.smk import run_script

sm = snakemake  # noqa: F821
run_script(sm, lambda: stages.curvature(list(sm.input.shards), sm.input.model, sm.output[0], sm.params.influence))
