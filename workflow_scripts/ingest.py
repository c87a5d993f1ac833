from bioprune import stages
from bioprune.smk import run_script

sm = snakemake  # noqa: F821
run_script(sm, lambda: stages.ingest(sm.input.fasta, list(sm.output.shards), sm.output.holdout, sm.output.stats,
                                     sm.params.ingest))
