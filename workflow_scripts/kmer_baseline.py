from bioprune import stages
from bioprune.smk import run_script

sm = snakemake  # noqa: F821
run_script(sm, lambda: stages.kmer_baseline(list(sm.input.shards), sm.input.holdout, sm.output[0], sm.params.benchmark))
