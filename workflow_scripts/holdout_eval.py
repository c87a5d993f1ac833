from bioprune import stages
from bioprune.smk import run_script

sm = snakemake  # noqa: F821
run_script(sm, lambda: stages.holdout_eval(sm.input.holdout, list(sm.input.shards), sm.output.holdout,
                                           sm.output.excluded, sm.output.report, sm.params.leakage, sm.threads))
