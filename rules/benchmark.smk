rule benchmark:
    input:
        model=f"{R}/models/{{model_strategy}}_{{budget}}_seed{{seed}}/model.pt",
        holdout=f"{R}/leakage/holdout_eval.h5",
        evals=eval_files(),
        splits=split_files(),
    output:
        report(
            f"{R}/metrics/{{model_strategy}}_{{budget}}_seed{{seed}}.csv",
            caption="../report/model_metrics.rst",
            category="2. Benchmarks",
            subcategory="per model",
            labels=model_labels,
        ),
    log:
        f"{R}/logs/benchmark/{{model_strategy}}_{{budget}}_seed{{seed}}.log",
    benchmark:
        f"{R}/benchmarks/benchmark/{{model_strategy}}_{{budget}}_seed{{seed}}.tsv"
    conda:
        "../envs/torch.yaml"
    threads: job_threads("benchmark")
    resources:
        mem_mb=job_mem_mb("benchmark"),
        runtime=job_runtime("benchmark"),
        gpu=GPU,
        gpu_mem_mb=job_gpu_mem_mb("benchmark"),
    params:
        benchmark=benchmark_params(config),
    script:
        "../workflow_scripts/benchmark.py"


rule kmer_baseline:
    input:
        shards=shard_files(),
        holdout=f"{R}/leakage/holdout_eval.h5",
        evals=eval_files(),
        splits=split_files(),
    output:
        f"{R}/metrics/kmer_baseline.csv",
    log:
        f"{R}/logs/kmer_baseline.log",
    conda:
        "../envs/core.yaml"
    threads: job_threads("kmer_baseline")
    resources:
        mem_mb=job_mem_mb("kmer_baseline"),
        runtime=job_runtime("kmer_baseline"),
    params:
        benchmark=kmer_params(config),
    script:
        "../workflow_scripts/kmer_baseline.py"


rule rnafold:
    input:
        f"{config['benchmark']['resources']}/rna/ss_eval.tsv.gz",
    output:
        f"{R}/metrics/rnafold.csv",
    log:
        f"{R}/logs/rnafold.log",
    conda:
        "../envs/torch.yaml"
    threads: job_threads("rnafold")
    resources:
        mem_mb=job_mem_mb("rnafold"),
        runtime=job_runtime("rnafold"),
    params:
        benchmark=benchmark_params(config),
    script:
        "../workflow_scripts/rnafold.py"


rule aggregate:
    input:
        metric_files(),
    output:
        summary=report(f"{R}/benchmark/summary.csv", caption="../report/summary.rst", category="2. Benchmarks"),
        table=report(f"{R}/benchmark/table.csv", caption="../report/table.rst", category="2. Benchmarks"),
        verdict=report(f"{R}/benchmark/verdict.txt", caption="../report/verdict.rst", category="2. Benchmarks"),
    log:
        f"{R}/logs/aggregate.log",
    localrule: True
    conda:
        "../envs/core.yaml"
    script:
        "../workflow_scripts/aggregate.py"


rule plot_scores:
    input:
        scores=f"{R}/influence/scores.h5",
        selections=list(plot_selections().values()),
    output:
        hist=report(f"{R}/plots/score_histogram.png", caption="../report/score_histogram.rst", category="3. Influence"),
        length=report(
            f"{R}/plots/score_vs_length.png", caption="../report/score_vs_length.rst", category="3. Influence"
        ),
    log:
        f"{R}/logs/plot_scores.log",
    localrule: True
    conda:
        "../envs/core.yaml"
    params:
        names=list(plot_selections().keys()),
    script:
        "../workflow_scripts/plot_scores.py"


rule plot_results:
    input:
        table=f"{R}/benchmark/table.csv",
        curves=list(curve_files().values()),
    output:
        metrics=report(f"{R}/plots/metrics.png", caption="../report/metrics.rst", category="2. Benchmarks"),
        pruning=report(
            f"{R}/plots/pruning_curves.png", caption="../report/pruning_curves.rst", category="2. Benchmarks"
        ),
        curves=report(f"{R}/plots/training_curves.png", caption="../report/curves.rst", category="4. Pretraining"),
    log:
        f"{R}/logs/plot_results.log",
    localrule: True
    conda:
        "../envs/core.yaml"
    params:
        names=list(curve_files().keys()),
    script:
        "../workflow_scripts/plot_results.py"


rule versions:
    output:
        report(f"{R}/benchmark/versions.csv", caption="../report/versions.rst", category="2. Benchmarks"),
    log:
        f"{R}/logs/versions.log",
    conda:
        "../envs/core.yaml"
    threads: job_threads("versions")
    resources:
        mem_mb=job_mem_mb("versions"),
        runtime=job_runtime("versions"),
    script:
        "../workflow_scripts/versions.py"


rule resolved_config:
    output:
        report(
            f"{R}/config.resolved.yaml",
            caption="../report/config.rst",
            category="6. Configuration",
        ),
    log:
        f"{R}/logs/resolved_config.log",
    localrule: True
    conda:
        "../envs/core.yaml"
    params:
        text=RESOLVED_YAML,
    script:
        "../workflow_scripts/resolved_config.py"


rule ledger:
    input:
        ledger_inputs(),
    output:
        report(
            f"{R}/benchmark/ledger.csv",
            caption="../report/ledger.rst",
            category="2. Benchmarks",
            labels={"table": "compute ledger"},
        ),
    log:
        f"{R}/logs/ledger.log",
    conda:
        "../envs/torch.yaml"
    threads: job_threads("ledger")
    resources:
        mem_mb=job_mem_mb("ledger"),
        runtime=job_runtime("ledger"),
    params:
        cluster_strata=cluster_strata_strategies(),
    script:
        "../workflow_scripts/ledger.py"


# The report's first category: the verdict, the paired table with its power, the ledger and the leakage
# gate as pages with their numbers in them (Snakemake offers CSV results only as downloads), and the RST
# fragments that the verdict's caption and the landing page (report/workflow.rst) include.
rule report_pages:
    input:
        table=f"{R}/benchmark/table.csv",
        verdict=f"{R}/benchmark/verdict.txt",
        ledger=f"{R}/benchmark/ledger.csv",
        leakage=f"{R}/leakage/report.csv",
    output:
        verdict=report(
            f"{R}/report/verdict.html",
            caption="../report/verdict_page.rst",
            category="1. Verdict",
            labels={"table": "1 verdict and paired table (with power)"},
        ),
        ledger=report(
            f"{R}/report/ledger.html",
            caption="../report/ledger.rst",
            category="1. Verdict",
            labels={"table": "2 compute ledger"},
        ),
        leakage=report(
            f"{R}/report/leakage.html",
            caption="../report/leakage.rst",
            category="1. Verdict",
            labels={"table": "3 leakage gate"},
        ),
        sentences=f"{R}/report/verdict.rst",
        landing=f"{R}/report/landing.rst",
    log:
        f"{R}/logs/report_pages.log",
    localrule: True
    conda:
        "../envs/core.yaml"
    script:
        "../workflow_scripts/report_pages.py"
