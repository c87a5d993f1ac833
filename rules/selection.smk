rule cluster:
    input:
        shard_files(),
    output:
        f"{R}/selection/cluster_representatives.txt",
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
    script:
        "../workflow_scripts/select.py"
