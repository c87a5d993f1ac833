from bioprune import stages
from bioprune.smk import run_script

sm = snakemake  # noqa: F821
w = sm.wildcards
run_script(sm, lambda: stages.benchmark(sm.input.model, sm.input.holdout, sm.output[0], sm.params.benchmark,
                                        w.model_strategy, w.budget, int(w.seed)))
