from bioprune.report.tables import plot_curves, plot_metrics, plot_pruning_curves
from bioprune.smk import run_script

sm = snakemake  # noqa: F821


def main():
    plot_metrics(sm.input.table, sm.output.metrics)
    plot_pruning_curves(sm.input.table, sm.output.pruning)
    plot_curves(dict(zip(sm.params.names, sm.input.curves)), sm.output.curves)


run_script(sm, main)
