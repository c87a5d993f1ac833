rule cluster:
    input:
        shard_files(),
    output:
        representatives=f"{R}/selection/cluster_representatives.txt",
        members=f"{R}/selection/cluster_members.tsv",
    log:
        f"{R}/logs/cluster.log",
    benchmark:
        f"{R}/benchmarks/cluster.tsv"
    conda:
        "../envs/mmseqs.yaml"
    threads: job_threads("cluster")
    resources:
        mem_mb=job_mem_mb("cluster"),
        runtime=job_runtime("cluster"),
    params:
        cluster=config["selection"]["cluster"],
    script:
        "../workflow_scripts/cluster.py"


rule select:
    input:
        unpack(selection_inputs),
    output:
        selection=f"{R}/selection/{{strategy}}_{{budget}}_seed{{seed}}.h5",
        fasta=f"{R}/selection/{{strategy}}_{{budget}}_seed{{seed}}.fa",
        table=f"{R}/selection/{{strategy}}_{{budget}}_seed{{seed}}.tsv",
        original=f"{R}/selection/{{strategy}}_{{budget}}_seed{{seed}}.original.fa",
    log:
        f"{R}/logs/select/{{strategy}}_{{budget}}_seed{{seed}}.log",
    benchmark:
        f"{R}/benchmarks/select/{{strategy}}_{{budget}}_seed{{seed}}.tsv"
    conda:
        "../envs/core.yaml"
    threads: job_threads("select")
    resources:
        mem_mb=job_mem_mb("select"),
        runtime=job_runtime("select"),
    params:
        selection=lambda w: selection_params(config, w.strategy),
        export={"files": CORPUS_FILES, "ingest": ingest_params(config)},
    script:
        "../workflow_scripts/select.py"


# The `coreset` target's report: pool, leakage gate, scores, stability and composition of every
# selection, in markdown (bioprune.report.coreset).
rule coreset_summary:
    input:
        unpack(coreset_summary_inputs),
    output:
        f"{R}/coreset/summary.md",
    log:
        f"{R}/logs/coreset_summary.log",
    localrule: True
    conda:
        "../envs/core.yaml"
    params:
        labels=[label for label, _ in selection_tables()],
    script:
        "../workflow_scripts/coreset_summary.py"


# `snakemake --cores N coreset`: ingest, leakage gate, reference, scoring (with stability), selection
# and export only (no pretraining, no benchmark); see README, "Quick start".
rule coreset:
    input:
        coreset_targets(),
    localrule: True
