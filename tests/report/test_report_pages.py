"""The report's first category and landing page (bioprune.report.pages): one verdict sentence per task
with its numbers, the paired table / ledger / leakage summary as HTML pages; and the plots' axis labels
(every axis names its unit; one budget draws points with ticks only at the fractions drawn). The
rendered report in a real browser: tests/workflow/test_workflow_extras.py."""
from __future__ import annotations

import math

import pandas as pd
import pytest

from bioprune.benchmarks.stats import summarise
from bioprune.report.tables import COLUMNS


def study_table() -> pd.DataFrame:
    rows = []
    for seed, base in enumerate([3.70, 3.80, 3.75]):
        rows += [("random", 0.005, seed, "perplexity", "perplexity", base),
                 ("degenerate", 0.005, seed, "perplexity", "perplexity", base + 0.5 + 0.01 * seed),
                 ("cci", 0.005, seed, "perplexity", "perplexity", base + [0.02, -0.03, 0.01][seed]),
                 ("top_influence", 0.005, seed, "perplexity", "perplexity", base - 0.3 - 0.01 * seed),
                 ("full", 1.0, seed, "perplexity", "perplexity", base - 0.2 - 0.01 * seed),
                 ("random", 0.005, seed, "rna_type", "accuracy", 0.5),
                 ("cci", 0.005, seed, "rna_type", "accuracy", 0.5)]
    rows.append(("kmer_baseline", float("nan"), 0, "perplexity", "perplexity", 3.6))
    return summarise(pd.DataFrame(rows, columns=COLUMNS))


def test_one_sentence_per_task_with_numbers():
    from bioprune.report.pages import sentences

    said = sentences(study_table())
    assert len(said) == 2 and all(s.count(". ") == 0 and s.endswith(".") for s in said)  # one sentence each
    ppl, acc = said
    assert ppl.startswith("**perplexity** (perplexity in exp(nats per masked token), lower is better, 3 seeds): ")
    assert "``top_influence`` at 0.005 scored 3.44, vs ``random`` 3.75: better by 0.31 (paired p" in ppl
    assert "``cci`` at 0.005 scored 3.75, vs ``random`` 3.75: no difference larger than" in ppl
    assert "the ``degenerate`` control separated from random (+0.51" in ppl
    assert "the full pool scored 3.54, the k-mer baseline 3.6." in ppl
    assert "indistinguishable" not in ppl
    assert "``cci`` at 0.005 scored 0.5, vs ``random`` 0.5: the same in all 3 seed pairs" in acc


def test_pages_hold_the_numbers(tmp_path):
    from docutils.core import publish_parts

    from bioprune.report.pages import write_pages

    study_table().to_csv(tmp_path / "table.csv", index=False)
    (tmp_path / "verdict.txt").write_text("perplexity perplexity (lower is better)\n")
    pd.DataFrame({"strategy": ["full", "cci"], "budget": [1.0, 0.005], "seed": [0, 0],
                  "total_flops_vs_full": [1.0, 0.25]}).to_csv(tmp_path / "ledger.csv", index=False)
    pd.DataFrame({"eval_set": ["all", "rna_type"], "source": ["all", "all"], "pool_sequences": [375, 375],
                  "removed": [12, 12], "eval_sequences": [1181, 600], "eval_with_hit": [13, 13]}
                 ).to_csv(tmp_path / "leak.csv", index=False)
    out = {k: str(tmp_path / f"{k}.{ext}") for k, ext in
           (("verdict", "html"), ("ledger", "html"), ("leakage", "html"), ("sentences", "rst"), ("landing", "rst"))}
    write_pages(*(str(tmp_path / f) for f in ("table.csv", "verdict.txt", "ledger.csv", "leak.csv")), out)
    verdict = (tmp_path / "verdict.html").read_text()
    assert "<b>perplexity</b>" in verdict and "vs random: diff [95% CI]" in verdict and "random MDE" in verdict
    table = verdict.split("<h3>Paired table</h3>", 1)[1]  # arms, then controls, then references
    assert table.index(">top_influence<") < table.index(">random<") < table.index(">kmer_baseline<")
    assert "<td>0.25</td>" in (tmp_path / "ledger.html").read_text()
    assert "<td>12</td>" in (tmp_path / "leakage.html").read_text()
    landing = (tmp_path / "landing.rst").read_text()
    html = publish_parts(landing, writer="html", settings_overrides={"halt_level": 2})["body"]  # valid RST
    assert "12 of 375 pool sequences were removed" in html and ">cci</tt> at 0.005 25%" in html


def test_every_plot_axis_is_labelled_and_one_budget_draws_points(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    from bioprune.report import tables as report
    study_table().to_csv(tmp_path / "table.csv", index=False)
    figs = []
    monkeypatch.setattr(report, "_save", lambda fig, path: figs.append(fig))
    report.plot_metrics(str(tmp_path / "table.csv"), str(tmp_path / "m.png"))
    report.plot_pruning_curves(str(tmp_path / "table.csv"), str(tmp_path / "p.png"))
    metrics, pruning = figs
    for fig in figs:
        for ax in fig.axes:
            assert ax.get_xlabel() and ax.get_ylabel(), ax.get_title()
    assert [ax.get_ylabel() for ax in pruning.axes] == ["perplexity (exp(nats per masked token))",
                                                         "accuracy (fraction of test sequences)"]
    ax = pruning.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0.005"] and not ax.get_xticklabels(minor=True)
    assert all(line.get_linestyle() == "None" for line in ax.get_lines() if len(line.get_xdata()) > 1 or
               line.get_marker() == "o")  # points, no connecting lines
    xs = sorted(float(line.get_xdata()[0]) for line in ax.get_lines() if line.get_marker() == "o")
    assert len(xs) == len(set(xs)) == 4 and all(math.isclose(x, 0.005, rel_tol=0.2) for x in xs)  # dodged
    plt.close("all")
