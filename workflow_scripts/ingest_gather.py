from bioprune import stages
from bioprune.smk import run_script

sm = snakemake  # noqa: F821
# shards are named "i-of-n" (destination i-1); the held-out file has no scatteritem (destination n)
item = getattr(sm.wildcards, "scatteritem", None)
dest = int(item.split("-of-")[0]) - 1 if item else sm.params.n_shards
run_script(sm, lambda: stages.ingest_gather(list(sm.input.parts), sm.output[0], dest, sm.params.n_shards))
