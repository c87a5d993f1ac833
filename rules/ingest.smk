rule ingest:
    input:
        fasta=config["corpus"]["path"],
    output:
        shards=scatter.shards(f"{R}/ingest/{{scatteritem}}.h5"),
        holdout=f"{R}/shards/holdout.h5",
        stats=f"{R}/shards/ingest.json",
    log:
        f"{R}/logs/ingest.log",
    conda:
        "../envs/core.yaml"
    params:
        ingest=ingest_params(config),
    script:
        "../workflow_scripts/ingest.py"
