from bioprune import stages
from bioprune.smk import run_script

sm = snakemake  # noqa: F821
run_script(sm, lambda: stages.ledger(list(sm.input), sm.output[0], list(sm.params.cluster_strata)))
