from bioprune import stages
from bioprune.smk import run_script

sm = snakemake  # noqa: F821
run_script(sm, lambda: stages.sketch(sm.input.shard, sm.input.model, sm.output[0], sm.params.influence,
                                     sm.input.get("curvature")))
