rule cluster:
    input:
        shard_files(),
    output:
        f"{R}/selection/cluster_representatives.txt",
    params:
        cluster=config["selection"]["cluster"],
    threads: 2
    log:
        f"{R}/logs/cluster.log",
    conda:
        "../envs/mmseqs.yaml"
    script:
        "../workflow_scripts/cluster.py"


rule select:
    input:
        unpack(selection_inputs),
    output:
        selection=f"{R}/selection/{{strategy}}_{{budget}}_seed{{seed}}.h5",
        fasta=f"{R}/selection/{{strategy}}_{{budget}}_seed{{seed}}.fa",
        table=f"{R}/selection/{{strategy}}_{{budget}}_seed{{seed}}.tsv",
    params:
        selection=lambda w: selection_params(config, w.strategy),
    log:
        f"{R}/logs/select/{{strategy}}_{{budget}}_seed{{seed}}.log",
    conda:
        "../envs/core.yaml"
    script:
        "../workflow_scripts/select.py"
