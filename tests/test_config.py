"""Config validation: defaults filled, and a wrong key, type or value stops with the key's name."""
from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import yaml

from bioprune.config import influence_params, load_config, validate_config
from bioprune.errors import BiopruneError

ROOT = Path(__file__).resolve().parents[1]


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
        (lambda c: c["corpus"].pop("path"), "key corpus: 'path' is a required property"),
        (lambda c: c.pop("corpus"), "'corpus' is a required property"),
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


def test_every_schema_key_documented_in_readme():
    schema = yaml.safe_load((ROOT / "schemas/config.schema.yaml").read_text())
    readme = (ROOT / "README.md").read_text()

    def keys(props, prefix=""):
        for k, v in props.items():
            yield prefix + k
            if "properties" in v:
                yield from keys(v["properties"], prefix + k + ".")

    missing = [k for k in keys(schema["properties"]) if f"`{k}`" not in readme]
    assert not missing, missing
