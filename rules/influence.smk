rule reference:
    input:
        unpack(reference_inputs),
    output:
        model=f"{R}/reference/model.pt",
        curves=f"{R}/reference/curves.h5",
    params:
        reference=reference_params(config),
    threads: local_threads()
    resources:
        gpu=GPU,
    log:
        f"{R}/logs/reference.log",
    benchmark:
        f"{R}/benchmarks/reference.tsv"
    conda:
        "../envs/torch.yaml"
    script:
        "../workflow_scripts/reference.py"


rule curvature:
    input:
        shards=shard_files(),
        model=f"{R}/reference/model.pt",
    output:
        f"{R}/curvature/diag_fisher.h5",
    params:
        influence=influence_params(config, "curvature"),
    threads: local_threads()
    resources:
        gpu=GPU,
    log:
        f"{R}/logs/curvature.log",
    benchmark:
        f"{R}/benchmarks/curvature.tsv"
    conda:
        "../envs/torch.yaml"
    script:
        "../workflow_scripts/curvature.py"


rule sketch:
    input:
        unpack(sketch_inputs),
    output:
        f"{R}/sketches/{{scatteritem}}.h5",
    params:
        influence=influence_params(config, "sketch"),
    resources:
        gpu=GPU,
    log:
        f"{R}/logs/sketch/{{scatteritem}}.log",
    benchmark:
        f"{R}/benchmarks/sketch/{{scatteritem}}.tsv"
    conda:
        "../envs/torch.yaml"
    script:
        "../workflow_scripts/sketch.py"


rule scores:
    input:
        sketch_files(),
    output:
        f"{R}/influence/scores.h5",
    params:
        damping=config["influence"]["damping"],
        estimator=ESTIMATOR,
    log:
        f"{R}/logs/scores.log",
    conda:
        "../envs/core.yaml"
    script:
        "../workflow_scripts/scores.py"
