# bioprune: influence-guided data pruning before pretraining biological foundation models.
# DAG: ingest (shards) -> reference -> [curvature] -> sketch (per shard) -> scores -> select
#      -> pretrain -> benchmark -> aggregate -> plots / report.  See README.md.
from snakemake.utils import min_version

min_version("9.0")


# No `configfile:` directive: rules/common.smk resolves the config once (schema defaults <- the
# user's --configfile(s) <- --config overrides; the bundled demo config.yaml only when no file is
# named), so the demo never fills gaps in a user's config. See bioprune/config.py.
report: "report/workflow.rst"


include: "rules/common.smk"


# Sites that run jobs in Apptainer set `container:` in the config (used with --sdm apptainer).
if config["container"]:

    container: config["container"]


scattergather:
    shards=config["corpus"]["shards"],


include: "rules/ingest.smk"
include: "rules/leakage.smk"
include: "rules/influence.smk"
include: "rules/selection.smk"
include: "rules/pretrain.smk"
include: "rules/benchmark.smk"


rule all:
    default_target: True
    input:
        all_targets(),
    localrule: True
