"""Config validation: defaults filled, and a wrong key, type or value stops with the key's name."""
from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import yaml

from bioprune.config import influence_params, load_config, validate_config
from bioprune.errors import BiopruneError

ROOT = Path(__file__).resolve().parents[2]


def default():
    return yaml.safe_load((ROOT / "config.yaml").read_text())


def test_defaults_filled():
    cfg = validate_config({"corpus": {"path": "x.fa", "molecule": "rna"}})
    assert cfg["corpus"]["max_length"] == 1024 and cfg["seeds"] == [0, 1, 2]
    assert cfg["corpus"]["molecule"] == "rna" and cfg["influence"]["damping"] == 1e-8
    assert cfg["selection"]["cci"]["beta"] == 0.1 and cfg["selection"]["cci"]["bins"] == 50


@pytest.mark.parametrize(
    "edit,key",
    [
        (lambda c: c["corpus"].update(molecule="dna"), "corpus.molecule"),
        (lambda c: c["corpus"].update(shards="four"), "corpus.shards"),
        (lambda c: c["selection"].update(budgets=[0]), "selection.budgets.0"),
        (lambda c: c["selection"].update(budgets=[1.5]), "selection.budgets.0"),
        (lambda c: c["selection"].update(strategies=["magic"]), "selection.strategies.0"),
        (lambda c: c["influence"].update(dampling=1e-3), "influence"),
        (lambda c: c["selection"].update(budgets=[0.2]), "selection.budgets"),
        (lambda c: c["pretrain"].update(embed_dim=30, heads=4), "pretrain.embed_dim"),
        (lambda c: c["corpus"].pop("path"), "missing required config key corpus.path"),
        (lambda c: c.pop("corpus"), "missing required config key corpus "),
    ],
)
def test_bad_config_names_key(edit, key):
    cfg = copy.deepcopy(default())
    edit(cfg)
    with pytest.raises(BiopruneError, match=re.escape(key)):
        validate_config(cfg, "my.yaml")


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(BiopruneError, match="config file not found"):
        load_config(str(tmp_path / "nope.yaml"))
    (tmp_path / "bad.yaml").write_text("corpus: [unclosed")
    with pytest.raises(BiopruneError, match="not valid YAML"):
        load_config(str(tmp_path / "bad.yaml"))


def test_projected_sketch_params_ignore_damping():
    cfg = validate_config(copy.deepcopy(default()))
    cfg["influence"]["estimator"] = "projected"
    a = influence_params(cfg, "sketch")
    cfg["influence"]["damping"] = 0.1
    assert influence_params(cfg, "sketch") == a and "damping" not in a


def test_every_schema_key_documented_in_configuration_page():
    schema = yaml.safe_load((ROOT / "schemas/config.schema.yaml").read_text())
    page = (ROOT / "docs/CONFIGURATION.md").read_text()

    def keys(props, prefix=""):
        for k, v in props.items():
            yield prefix + k
            if "properties" in v:
                yield from keys(v["properties"], prefix + k + ".")

    missing = [k for k in keys(schema["properties"]) if f"`{k}`" not in page]
    assert not missing, missing


# --- one resolution for Snakemake and the CLI (issue 17) -------------------------------------------
import subprocess  # noqa: E402
import sys  # noqa: E402

from bioprune.config import coerce, parse_override, resolve_config  # noqa: E402

BIN = Path(sys.executable).parent
USER = {"corpus": {"path": "tests/data/tiny_rna.fa.gz", "molecule": "rna", "shards": 2},
        "results": "results_user", "seeds": [0]}


def test_user_file_is_not_filled_by_the_demo(tmp_path):
    """Omitted keys take the schema defaults, never the demo config.yaml's values."""
    demo = default()
    schema = yaml.safe_load((ROOT / "schemas/config.schema.yaml").read_text())
    (tmp_path / "u.yaml").write_text(yaml.safe_dump(USER))
    cfg = resolve_config([tmp_path / "u.yaml"])
    schema_lr = schema["properties"]["reference"]["properties"]["lr"]["default"]
    assert demo["reference"]["lr"] != schema_lr  # otherwise this test could not tell the two apart
    assert cfg["reference"]["lr"] == schema_lr
    assert cfg["corpus"]["max_length"] == 1024 != demo["corpus"]["max_length"]
    # no file at all: the demo is the config
    assert resolve_config(None)["reference"]["lr"] == demo["reference"]["lr"]


def test_files_merge_in_order_then_overrides(tmp_path):
    (tmp_path / "a.yaml").write_text(yaml.safe_dump(USER))
    (tmp_path / "b.yaml").write_text(yaml.safe_dump({"reference": {"lr": 0.005, "epochs": 3}}))
    cfg = resolve_config([tmp_path / "a.yaml", tmp_path / "b.yaml"], {"reference": {"epochs": "7"}, "seeds": ["0", "2"]})
    assert cfg["reference"]["lr"] == 0.005 and cfg["reference"]["epochs"] == 7 and cfg["seeds"] == [0, 2]
    assert cfg["corpus"]["shards"] == 2


def test_command_line_values_are_coerced_by_the_schema():
    """Snakemake hands --config seeds=[0] over as ['0']; numbers, lists and booleans are re-read."""
    schema = yaml.safe_load((ROOT / "schemas/config.schema.yaml").read_text())
    got = coerce({"seeds": ["0", "1"], "pretrain": {"lr": "0.003", "include_full": "false"},
                  "corpus": {"path": "123"}, "influence": {"params": "all_linear"}}, schema)
    assert got == {"seeds": [0, 1], "pretrain": {"lr": 0.003, "include_full": False},
                   "corpus": {"path": "123"}, "influence": {"params": "all_linear"}}
    assert parse_override("selection.cci.bins=12") == {"selection": {"cci": {"bins": 12}}}
    with pytest.raises(BiopruneError, match="KEY=VALUE"):
        parse_override("nonsense")
    with pytest.raises(BiopruneError, match="key seeds.0"):
        resolve_config([ROOT / "config.yaml"], {"seeds": ["zero"]})


def test_missing_corpus_path_stops_cli_and_snakemake(tmp_path):
    (tmp_path / "u.yaml").write_text(yaml.safe_dump({"corpus": {"molecule": "protein"}}))
    cli = subprocess.run([str(BIN / "bioprune"), "config", "--config", "u.yaml"], cwd=tmp_path,
                         capture_output=True, text=True)
    assert cli.returncode == 1 and "missing required config key corpus.path" in cli.stderr
    assert "Traceback" not in cli.stderr
    smk = subprocess.run([str(BIN / "snakemake"), "-s", str(ROOT / "Snakefile"), "--configfile", "u.yaml", "-n"],
                         cwd=tmp_path, capture_output=True, text=True)
    assert smk.returncode != 0 and "missing required config key corpus.path" in smk.stdout + smk.stderr
    assert not (tmp_path / "results").exists()


def test_one_yaml_one_resolved_config_in_snakemake_and_cli(tmp_path):
    """The same YAML + overrides resolve identically through Snakemake and `bioprune config`."""
    (tmp_path / "u.yaml").write_text(yaml.safe_dump(USER))
    (tmp_path / "tests").mkdir()  # corpus.path must exist (checked before the first job)
    (tmp_path / "tests/data").symlink_to(ROOT / "tests/data")
    smk = subprocess.run([str(BIN / "snakemake"), "-s", str(ROOT / "Snakefile"), "--configfile", "u.yaml",
                          "--config", "seeds=[0,2]", "reference={lr: 0.004}", "--cores", "1",
                          "results_user/config.resolved.yaml"], cwd=tmp_path, capture_output=True, text=True)
    assert smk.returncode == 0, smk.stderr[-2000:]
    cli = subprocess.run([str(BIN / "bioprune"), "config", "--config", "u.yaml", "--set", "seeds=[0,2]",
                          "--set", "reference.lr=0.004"], cwd=tmp_path, capture_output=True, text=True)
    assert cli.returncode == 0, cli.stderr
    from_smk = yaml.safe_load((tmp_path / "results_user/config.resolved.yaml").read_text())
    assert from_smk == yaml.safe_load(cli.stdout)
    assert from_smk["seeds"] == [0, 2] and from_smk["reference"]["lr"] == 0.004
    assert from_smk["reference"]["epochs"] == 10  # schema default, not the demo's 6


def test_paper_exact_sets_the_official_influence_keys_and_refuses_contradictions(tmp_path):
    (tmp_path / "p.yaml").write_text(yaml.safe_dump({**USER, "influence": {"paper_exact": True}}))
    inf = resolve_config([tmp_path / "p.yaml"])["influence"]
    assert (inf["loss"], inf["pad_to"], inf["damping"], inf["normalize"], inf["params"]) == (
        "reconstruction_padded", 1024, 1e-8, "none", ["lm_head.dense.weight"])
    with pytest.raises(BiopruneError, match="influence.loss.*contradicts influence.paper_exact"):
        resolve_config([tmp_path / "p.yaml"], {"influence": {"loss": "mlm"}})


def test_stage_params_carry_the_seed_each_stage_depends_on():
    cfg = resolve_config(None)
    a = influence_params(cfg, "sketch", 0, 0)
    b = influence_params(cfg, "sketch", 0, 1)
    c = influence_params(cfg, "sketch", 1, 0)
    assert (a["seed"], a["subset_seed"]) == (0, 0) and (b["seed"], b["subset_seed"]) == (1, 0)
    assert (c["seed"], c["subset_seed"]) == (0, 1) and a["subset_fraction"] == cfg["reference"]["subset_fraction"]
    assert "damping" not in influence_params(cfg, "curvature", 0, 0)
    # no seeds given: the influence seed is influence.seed and D_sub's seed is reference.seed (distinct here)
    cfg = resolve_config(None, {"influence": {"seed": 7}, "reference": {"seed": 3}})
    for stage in ("curvature", "sketch"):
        d = influence_params(cfg, stage)
        assert (d["seed"], d["subset_seed"]) == (7, 3), stage
    with pytest.raises(BiopruneError, match="selection.reference_seeds"):
        resolve_config(None, {"selection": {"reference_seeds": [0]}})


def test_configuration_page_table_is_the_schema():
    """docs/CONFIGURATION.md's key table is generated from the schema: a new key, default or description shows up
    there."""
    from bioprune.config import schema_markdown

    page = (ROOT / "docs/CONFIGURATION.md").read_text()
    start = page.index("| key | default | meaning |")
    assert page[start:page.index("\n\n", start) + 1] == schema_markdown()


def test_shipped_paths_resolve_through_the_workflow_user_paths_through_the_working_dir(tmp_path, monkeypatch):
    """The bundled demo names shipped files (relative to the workflow); a user's file names paths relative to
    the working directory; benchmark.resources: null is the shipped evaluation sets. From the checkout the
    demo's paths stay as written (so params, and with them re-runs, do not change)."""
    from bioprune.config import resolve_config

    monkeypatch.chdir(tmp_path)
    demo = resolve_config()
    assert Path(demo["corpus"]["path"]) == ROOT / "resources/rna/pool.fa.gz"
    assert Path(demo["benchmark"]["resources"]) == ROOT / "resources"
    user = tmp_path / "u.yaml"
    user.write_text("corpus: {path: data/pool.fa, molecule: rna}\n")
    mine = resolve_config([user])
    assert mine["corpus"]["path"] == "data/pool.fa" and Path(mine["benchmark"]["resources"]) == ROOT / "resources"
    assert resolve_config(data={"corpus": {"path": "x.fa", "molecule": "rna"}, "seeds": ["4"]})["seeds"] == [4]
    monkeypatch.chdir(ROOT)
    here = resolve_config()
    assert here["corpus"]["path"] == "resources/rna/pool.fa.gz" and here["benchmark"]["resources"] == "resources"
