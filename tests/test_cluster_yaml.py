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


def _start_commands(config):
    return config["head_start_ray_commands"] + config["worker_start_ray_commands"]


def test_dashboard_and_jobs_api_stay_inside_the_cluster(config):
    """Port 8265 is bound to the head's loopback (reached through `ray dashboard`'s SSH tunnel),
    and no security group rule of the config opens it (or anything but SSH) to the outside."""
    head_start = " ".join(config["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head_start
    assert "0.0.0.0" not in (ROOT / "cluster.yaml").read_text().split("head_start_ray_commands")[1]
    for rule in config["provider"].get("security_group", {}).get("IpPermissions", []):
        ports = range(rule.get("FromPort", 0), rule.get("ToPort", 65535) + 1)
        public = any(r.get("CidrIp") == "0.0.0.0/0" for r in rule.get("IpRanges", []))
        assert not (public and 8265 in ports), rule


def test_token_authentication_is_on_for_every_node(config):
    assert all("RAY_AUTH_MODE=token" in c for c in _start_commands(config) if "ray start" in c)
    assert not any("RAY_AUTH_MODE=disabled" in c for c in _start_commands(config))
    # every node gets the token of the machine that runs `ray up` (and `ray job submit`)
    assert config["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"


def _with_spot_block_uncommented():
    text = (ROOT / "cluster.yaml").read_text()
    begin, end = "  # --- spot worker type (begin)\n", "  # --- spot worker type (end)"
    assert begin in text and end in text
    head, rest = text.split(begin)
    block, tail = rest.split(end)
    lines = block.splitlines()
    assert lines and all(ln.startswith("  # ") for ln in lines)  # shipped commented out
    return yaml.safe_load(head + "\n".join("  " + ln[4:] for ln in lines) + "\n" + tail)


def test_the_commented_spot_worker_type_is_valid_when_enabled(schema):
    cfg = _with_spot_block_uncommented()
    spot = cfg["available_node_types"]["worker.gpu.spot"]
    assert spot["node_config"]["InstanceMarketOptions"] == {"MarketType": "spot"}
    assert spot["resources"] == {"CPU": 4, "GPU": 1}
    jsonschema.validate(cfg, schema)
    _ray_validate(cfg)
