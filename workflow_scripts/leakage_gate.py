from bioprune import stages
from bioprune.smk import run_script

sm = snakemake  # noqa: F821
run_script(sm, lambda: stages.leakage_gate(list(sm.input.shards), list(sm.input.evals), list(sm.output.shards),
                                           sm.output.excluded, sm.output.report, sm.params.leakage, sm.threads,
                                           sm.config["selection"]))
