from bioprune import stages
from bioprune.smk import run_script

sm = snakemake  # noqa: F821
run_script(sm, lambda: stages.cluster(list(sm.input), sm.output.representatives, sm.params.cluster, sm.threads,
                                      sm.output.members))
