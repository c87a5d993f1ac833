from bioprune import stages
from bioprune.smk import run_script

sm = snakemake  # noqa: F821
run_script(sm, lambda: stages.reference(list(sm.input.shards), sm.output.model, sm.output.curves, sm.params.reference))
