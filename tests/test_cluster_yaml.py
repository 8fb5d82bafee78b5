"""cluster.yaml: valid for `ray up` (Ray's bundled schema and its cross-field rules)."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def schema():
    import ray.autoscaler

    return json.loads(Path(os.path.dirname(ray.autoscaler.__file__), "ray-schema.json").read_text())


@pytest.fixture
def config():
    return yaml.safe_load((ROOT / "cluster.yaml").read_text())


def _ray_validate(cfg):
    from ray.autoscaler._private.util import prepare_config, validate_config

    validate_config(prepare_config(copy.deepcopy(cfg)))


def test_cluster_yaml_passes_ray_schema_and_cross_field_rules(schema, config):
    jsonschema.validate(config, schema)
    _ray_validate(config)


def test_cluster_shape_cpu_head_and_one_gpu_workers(config):
    assert config["provider"]["type"] == "aws"
    types = config["available_node_types"]
    head = types[config["head_node_type"]]
    assert head["node_config"]["InstanceType"].startswith("m5.")
    assert head["resources"].get("GPU", 0) == 0
    workers = [t for name, t in types.items() if name != config["head_node_type"]]
    assert workers and all(w["resources"] == {"CPU": 4, "GPU": 1} for w in workers)
    assert all(w["node_config"]["InstanceType"] == "g5.xlarge" for w in workers)
    assert all(w.get("min_workers", 0) < w["max_workers"] for w in workers)  # autoscaling
    setup = " ".join(config["setup_commands"])
    assert "torch" in setup and "~/relex" in setup and "/mnt/efs" in setup


def test_schema_catches_mistakes(schema, config):
    bad = copy.deepcopy(config)
    bad["avaliable_node_types"] = bad.pop("available_node_types")  # typo: unknown top-level key
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)
    bad = copy.deepcopy(config)
    bad["available_node_types"]["worker.gpu"]["resources"]["GPU"] = 0.5  # must be an integer
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)


def test_cross_field_rules_are_enforced(config):
    bad = copy.deepcopy(config)
    bad["head_node_type"] = "head.gpu"
    with pytest.raises(ValueError, match="head_node_type"):
        _ray_validate(bad)
    bad = copy.deepcopy(config)
    bad["available_node_types"]["worker.gpu"]["min_workers"] = bad["max_workers"] + 1
    with pytest.raises(ValueError, match="min_workers"):
        _ray_validate(bad)
