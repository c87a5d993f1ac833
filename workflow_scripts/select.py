from bioprune import stages
from bioprune.smk import run_script

sm = snakemake  # noqa: F821
run_script(sm, lambda: stages.select(sm.input.scores, list(sm.input.shards), sm.output.selection, sm.output.fasta,
                                     sm.params.selection, float(sm.wildcards.budget), int(sm.wildcards.seed),
                                     sm.input.get("representatives"), sm.output.get("table"),
                                     sm.params.export, sm.input.get("members")))
