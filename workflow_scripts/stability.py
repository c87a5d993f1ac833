from bioprune import stages
from bioprune.smk import run_script

sm = snakemake  # noqa: F821
run_script(sm, lambda: stages.stability(sm.input.primary, sm.input.influence_seed, sm.input.reference_seed,
                                        dict(zip(sm.params.names, sm.input.selections)), sm.output.csv,
                                        sm.output.png, list(sm.params.budgets)))
