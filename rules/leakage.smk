# Leakage gate: pool sequences that near-copy an evaluation sequence (MMseqs2, identity >=
# leakage.max_identity over >= leakage.min_coverage of the shorter one) leave the pool before
# scoring, selection and pretraining. Ingest writes {R}/ingest/ shards; the gate writes {R}/shards/.


rule leakage_gate:
    input:
        shards=gather.shards(f"{R}/ingest/{{scatteritem}}.h5"),
        evals=leakage_eval_files(),
        # ingest_summary stops the run when ingest kept nothing (naming the filter): nothing runs on an empty pool
        ingest=f"{R}/shards/ingest.json",
    output:
        shards=scatter.shards(f"{R}/shards/{{scatteritem}}.h5"),
        excluded=f"{R}/leakage/excluded.txt",
        report=report(
            f"{R}/leakage/report.csv",
            caption="../report/leakage.rst",
            category="5. Leakage",
            labels={"table": "leakage gate"},
        ),
    log:
        f"{R}/logs/leakage_gate.log",
    benchmark:
        f"{R}/benchmarks/leakage_gate.tsv"
    conda:
        "../envs/mmseqs.yaml"
    threads: job_threads("leakage_gate")
    resources:
        mem_mb=job_mem_mb("leakage_gate"),
        runtime=job_runtime("leakage_gate"),
    params:
        leakage=leakage_params(config),
    script:
        "../workflow_scripts/leakage_gate.py"


# Held-out evaluation file without the held-out sequences that near-copy a pool sequence (leakage.holdout):
# held-out perplexity, kmer_baseline and pretraining's validation curve read it.
rule holdout_eval:
    input:
        holdout=f"{R}/shards/holdout.h5",
        shards=shard_files(),
    output:
        holdout=f"{R}/leakage/holdout_eval.h5",
        excluded=f"{R}/leakage/holdout_excluded.txt",
        report=report(
            f"{R}/leakage/holdout_report.csv",
            caption="../report/holdout_leakage.rst",
            category="5. Leakage",
            labels={"table": "held-out filter"},
        ),
    log:
        f"{R}/logs/holdout_eval.log",
    conda:
        "../envs/mmseqs.yaml"
    threads: job_threads("holdout_eval")
    resources:
        mem_mb=job_mem_mb("holdout_eval"),
        runtime=job_runtime("holdout_eval"),
    params:
        leakage=leakage_params(config),
    script:
        "../workflow_scripts/holdout_eval.py"


rule probe_split:
    input:
        lambda w: f"{config['benchmark']['resources']}/{EVAL_FILES[w.task]}",
    output:
        f"{R}/benchmark/splits/{{task}}.tsv",
    log:
        f"{R}/logs/probe_split/{{task}}.log",
    conda:
        "../envs/mmseqs.yaml"
    threads: job_threads("probe_split")
    resources:
        mem_mb=job_mem_mb("probe_split"),
        runtime=job_runtime("probe_split"),
    params:
        split=split_params(config),
    script:
        "../workflow_scripts/probe_split.py"


rule nearest_neighbour:
    input:
        evals=eval_files(),
        splits=split_files(),
    output:
        f"{R}/metrics/nearest_neighbour.csv",
    log:
        f"{R}/logs/nearest_neighbour.log",
    conda:
        "../envs/core.yaml"
    threads: job_threads("nearest_neighbour")
    resources:
        mem_mb=job_mem_mb("nearest_neighbour"),
        runtime=job_runtime("nearest_neighbour"),
    params:
        benchmark=benchmark_params(config),
    script:
        "../workflow_scripts/nearest_neighbour.py"
