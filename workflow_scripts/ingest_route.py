from bioprune import stages
from bioprune.smk import run_script

sm = snakemake  # noqa: F821
run_script(sm, lambda: stages.ingest_route(sm.input[0], sm.output[0], int(sm.wildcards.file), sm.params.n_shards,
                                           sm.params.ingest, sm.params.span))
