# bioprune: influence-guided data pruning before pretraining biological foundation models.
# DAG: ingest (shards) -> reference -> [curvature] -> sketch (per shard) -> scores -> select
#      -> pretrain -> benchmark -> aggregate -> plots / report.  See README.md.
from snakemake.utils import min_version

min_version("9.0")


configfile: "config.yaml"


report: "report/workflow.rst"


include: "rules/common.smk"


scattergather:
    shards=config["corpus"]["shards"],


include: "rules/ingest.smk"
include: "rules/influence.smk"
include: "rules/selection.smk"
include: "rules/pretrain.smk"
include: "rules/benchmark.smk"


# cheap bookkeeping jobs run on the submitting host, not as cluster jobs
localrules:
    all,
    aggregate,
    plot_scores,
    plot_results,
    versions,


rule all:
    default_target: True
    input:
        all_targets(),
