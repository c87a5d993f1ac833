# Ingest as scatter/gather: one route job per input file (corpus.path: a file, a glob or a list),
# or per byte range of an uncompressed file larger than corpus.split_mb, writes a part file with
# every record grouped by destination (shard or held-out split, by the digest of its sequence);
# one gather job per shard collapses exact duplicates and checks the ids of its id bucket; a last
# job sums the stats. Shards do not depend on the number of route jobs.


rule ingest_route:
    input:
        lambda w: CORPUS_FILES[int(w.file)],
    output:
        temp(f"{R}/ingest/parts/{{file}}_{{span}}.h5"),
    log:
        f"{R}/logs/ingest/route_{{file}}_{{span}}.log",
    benchmark:
        f"{R}/benchmarks/ingest/route_{{file}}_{{span}}.tsv"
    wildcard_constraints:
        file=r"\d+",
        span=r"\d+",
    conda:
        "../envs/core.yaml"
    threads: job_threads("ingest_route")
    resources:
        mem_mb=job_mem_mb("ingest_route"),
        runtime=job_runtime("ingest_route"),
    params:
        ingest=ingest_params(config),
        n_shards=config["corpus"]["shards"],
        span=ingest_span,
    script:
        "../workflow_scripts/ingest_route.py"


rule ingest_gather:
    input:
        parts=ingest_parts(),
    output:
        f"{R}/ingest/{{scatteritem}}.h5",
    log:
        f"{R}/logs/ingest/gather_{{scatteritem}}.log",
    benchmark:
        f"{R}/benchmarks/ingest/gather_{{scatteritem}}.tsv"
    wildcard_constraints:
        scatteritem=r"\d+-of-\d+",
    conda:
        "../envs/core.yaml"
    threads: job_threads("ingest_gather")
    resources:
        mem_mb=job_mem_mb("ingest_gather"),
        runtime=job_runtime("ingest_gather"),
    params:
        n_shards=config["corpus"]["shards"],
    script:
        "../workflow_scripts/ingest_gather.py"


# The held-out file waits for every shard's gather, where duplicate ids are checked: a corpus that
# fails that check leaves no held-out file that looks valid.
use rule ingest_gather as ingest_holdout with:
    input:
        parts=ingest_parts(),
        shards=gather.shards(f"{R}/ingest/{{scatteritem}}.h5"),
    output:
        f"{R}/shards/holdout.h5",
    log:
        f"{R}/logs/ingest/gather_holdout.log",
    benchmark:
        f"{R}/benchmarks/ingest/gather_holdout.tsv"


rule ingest_summary:
    input:
        parts=ingest_parts(),
        shards=gather.shards(f"{R}/ingest/{{scatteritem}}.h5"),
        holdout=f"{R}/shards/holdout.h5",
    output:
        f"{R}/shards/ingest.json",
    log:
        f"{R}/logs/ingest/summary.log",
    localrule: True
    conda:
        "../envs/core.yaml"
    params:
        ingest=ingest_params(config),
        files=CORPUS_FILES,
    script:
        "../workflow_scripts/ingest_summary.py"
