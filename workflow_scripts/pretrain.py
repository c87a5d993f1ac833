from bioprune import stages
from bioprune.smk import run_script

sm = snakemake  # noqa: F821
w = sm.wildcards
run_script(sm, lambda: stages.pretrain(list(sm.input.shards), sm.input.holdout, sm.output.model, sm.output.curves,
                                       sm.params.pretrain, int(w.seed), sm.input.selection or None,
                                       f"{w.model_strategy}_{w.budget}_seed{w.seed}"))
