from bioprune.report.coreset import write_summary
from bioprune.smk import run_script

sm = snakemake  # noqa: F821
run_script(sm, lambda: write_summary(sm.output[0], sm.input.ingest, sm.input.leakage, sm.input.scores,
                                     dict(zip(sm.params.labels, sm.input.tables)), sm.input.get("stability"),
                                     reference_curves=sm.input.reference))
