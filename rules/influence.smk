# Scoring runs per (reference seed r, influence seed i): r draws D_sub and the reference model's init,
# i draws the scoring pass's masks and projections. The primary run is (reference.seed, influence.seed);
# selection.reference_seeds and the stability stage add other pairs (see score_runs() in common.smk).


rule reference:
    input:
        unpack(reference_inputs),
    output:
        model=f"{R}/reference/seed{{rseed}}/model.pt",
        curves=f"{R}/reference/seed{{rseed}}/curves.h5",
    log:
        f"{R}/logs/reference/seed{{rseed}}.log",
    benchmark:
        f"{R}/benchmarks/reference/seed{{rseed}}.tsv"
    conda:
        "../envs/torch.yaml"
    threads: job_threads("reference")
    resources:
        mem_mb=job_mem_mb("reference"),
        runtime=job_runtime("reference"),
        gpu=GPU,
        gpu_mem_mb=job_gpu_mem_mb("reference"),
    params:
        reference=lambda w: reference_params(config, int(w.rseed)),
    script:
        "../workflow_scripts/reference.py"


rule curvature:
    input:
        shards=shard_files(),
        model=f"{R}/reference/seed{{rseed}}/model.pt",
    output:
        f"{R}/curvature/ref{{rseed}}_inf{{iseed}}.h5",
    log:
        f"{R}/logs/curvature/ref{{rseed}}_inf{{iseed}}.log",
    benchmark:
        f"{R}/benchmarks/curvature/ref{{rseed}}_inf{{iseed}}.tsv"
    conda:
        "../envs/torch.yaml"
    threads: job_threads("curvature")
    resources:
        mem_mb=job_mem_mb("curvature"),
        runtime=job_runtime("curvature"),
        gpu=GPU,
        gpu_mem_mb=job_gpu_mem_mb("curvature"),
    params:
        influence=lambda w: influence_params(config, "curvature", int(w.rseed), int(w.iseed)),
    script:
        "../workflow_scripts/curvature.py"


rule sketch:
    input:
        unpack(sketch_inputs),
    output:
        f"{R}/sketches/ref{{rseed}}_inf{{iseed}}/{{scatteritem}}.h5",
    log:
        f"{R}/logs/sketch/ref{{rseed}}_inf{{iseed}}/{{scatteritem}}.log",
    benchmark:
        f"{R}/benchmarks/sketch/ref{{rseed}}_inf{{iseed}}/{{scatteritem}}.tsv"
    conda:
        "../envs/torch.yaml"
    threads: job_threads("sketch")
    resources:
        mem_mb=job_mem_mb("sketch"),
        runtime=job_runtime("sketch"),
        gpu=GPU,
        gpu_mem_mb=job_gpu_mem_mb("sketch"),
    params:
        influence=lambda w: influence_params(config, "sketch", int(w.rseed), int(w.iseed)),
    script:
        "../workflow_scripts/sketch.py"


rule scores:
    input:
        sketch_files,
    output:
        f"{R}/influence/ref{{rseed}}_inf{{iseed}}/scores.h5",
    log:
        f"{R}/logs/scores/ref{{rseed}}_inf{{iseed}}.log",
    benchmark:
        f"{R}/benchmarks/scores/ref{{rseed}}_inf{{iseed}}.tsv"
    conda:
        "../envs/core.yaml"
    threads: job_threads("scores")
    resources:
        mem_mb=job_mem_mb("scores"),
        runtime=job_runtime("scores"),
    params:
        merge=lambda w: influence_params(config, "scores", int(w.rseed), int(w.iseed)),
    script:
        "../workflow_scripts/scores.py"


# reference.ensemble R > 1: the per-sequence average of R member runs' scores (bioprune.influence.ensemble)
rule ensemble_scores:
    input:
        ensemble_inputs,
    output:
        f"{R}/influence/ensemble{ENSEMBLE}/ref{{rseed}}_inf{{iseed}}/scores.h5",
    log:
        f"{R}/logs/ensemble/ref{{rseed}}_inf{{iseed}}.log",
    benchmark:
        f"{R}/benchmarks/ensemble/ref{{rseed}}_inf{{iseed}}.tsv"
    conda:
        "../envs/core.yaml"
    threads: job_threads("scores")
    resources:
        mem_mb=job_mem_mb("scores"),
        runtime=job_runtime("scores"),
    params:
        ensemble=lambda w: ensemble_params(config, int(w.rseed)),
    script:
        "../workflow_scripts/ensemble_scores.py"


rule primary_scores:
    input:
        score_file(*PRIMARY),
    output:
        f"{R}/influence/scores.h5",
    log:
        f"{R}/logs/scores/primary.log",
    localrule: True
    conda:
        "../envs/core.yaml"
    script:
        "../workflow_scripts/copy_file.py"


rule stability:
    input:
        unpack(stability_inputs),
    output:
        csv=report(
            f"{R}/influence/stability.csv",
            caption="../report/stability.rst",
            category="3. Influence",
            labels={"figure": "stability table"},
        ),
        png=report(
            f"{R}/plots/stability.png",
            caption="../report/stability.rst",
            category="3. Influence",
            labels={"figure": "stability"},
        ),
    log:
        f"{R}/logs/stability.log",
    conda:
        "../envs/core.yaml"
    threads: job_threads("stability")
    resources:
        mem_mb=job_mem_mb("stability"),
        runtime=job_runtime("stability"),
    params:
        budgets=config["selection"]["budgets"],
        names=lambda w: list(plot_selections().keys()),
    script:
        "../workflow_scripts/stability.py"
