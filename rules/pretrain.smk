rule pretrain:
    input:
        shards=shard_files(),
        holdout=f"{R}/leakage/holdout_eval.h5",
        selection=pretrain_selection,
    output:
        model=f"{R}/models/{{model_strategy}}_{{budget}}_seed{{seed}}/model.pt",
        curves=f"{R}/models/{{model_strategy}}_{{budget}}_seed{{seed}}/curves.h5",
    log:
        f"{R}/logs/pretrain/{{model_strategy}}_{{budget}}_seed{{seed}}.log",
    benchmark:
        f"{R}/benchmarks/pretrain/{{model_strategy}}_{{budget}}_seed{{seed}}.tsv"
    conda:
        "../envs/torch.yaml"
    threads: job_threads("pretrain")
    resources:
        mem_mb=job_mem_mb("pretrain"),
        runtime=pretrain_runtime,
        gpu=PRETRAIN_GPUS,
        gpu_mem_mb=job_gpu_mem_mb("pretrain"),
    params:
        pretrain=pretrain_params(config),
    script:
        "../workflow_scripts/pretrain.py"
