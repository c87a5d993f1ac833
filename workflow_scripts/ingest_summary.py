from bioprune import stages
from bioprune.smk import run_script

sm = snakemake  # noqa: F821
run_script(sm, lambda: stages.ingest_summary(list(sm.input.parts), list(sm.input.shards), sm.input.holdout, sm.output[0],
                                                   dict(sm.params.ingest), list(sm.params.files)))
