"""The generic resumable state: safetensors + JSON, no pickle, values come back as they were."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch

from relex.errors import RelexError
from relex.train import state


class Holder:
    def __init__(self, value):
        self.value = value

    def state_dict(self):
        return self.value

    def load_state_dict(self, value):
        self.value = value


def test_round_trip_of_every_kind_of_value(tmp_path):
    shared = torch.arange(6.0)
    value = {"tensor": torch.randn(2, 3), "tied_a": shared, "tied_b": shared,
             "ints": {0: {"step": torch.tensor(3.0), "beta": (0.9, 0.999)}, 1: {}},
             "array": np.arange(5, dtype=np.uint32), "f64": np.linspace(0, 1, 4),
             "nested": [1, 2.5, "x", None, True, (1, "a")], "nan": float("nan")}
    state.save(tmp_path / "s", {"thing": Holder(value)}, {"note": "hi"})
    back = Holder(None)
    meta = state.load(tmp_path / "s", {"thing": back})
    got = back.value
    assert meta == {"note": "hi"}
    assert torch.equal(got["tensor"], value["tensor"]) and torch.equal(got["tied_b"], shared)
    assert got["ints"][0]["beta"] == (0.9, 0.999) and isinstance(got["ints"][0]["beta"], tuple)
    assert set(got["ints"]) == {0, 1} and torch.equal(got["ints"][0]["step"], torch.tensor(3.0))
    assert got["array"].dtype == np.uint32 and (got["array"] == np.arange(5)).all()
    assert got["f64"].dtype == np.float64 and (got["f64"] == value["f64"]).all()
    assert got["nested"] == [1, 2.5, "x", None, True, (1, "a")]
    assert np.isnan(got["nan"])
    from safetensors.torch import load_file

    stored = load_file(str(tmp_path / "s" / state.TENSORS))
    assert len([k for k in stored if k.startswith("thing/tied")]) == 1  # tied tensors stored once
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == [state.STATE, state.TENSORS]


def test_random_generators_continue_exactly(tmp_path):
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    state.save(tmp_path / "r", {"random": state.RandomState()})
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    state.load(tmp_path / "r", {"random": state.RandomState()})
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected


def test_refuses_values_it_cannot_store_without_pickle(tmp_path):
    with pytest.raises(TypeError, match="thing/bad is a set"):
        state.save(tmp_path / "s", {"thing": Holder({"bad": {1, 2}})})
    assert not (tmp_path / "s").exists()  # nothing half-written


def test_old_and_foreign_states_fail_in_one_line(tmp_path):
    old = tmp_path / "old"
    old.mkdir()
    (old / "state.json").write_text(json.dumps({"format": "relex-train-state", "version": 1}))
    with pytest.raises(RelexError) as e:
        state.read_meta(old)
    msg = str(e.value)
    assert "\n" not in msg and "format 2" in msg and "relex evaluate" in msg and "without --resume" in msg
    newer = tmp_path / "newer"
    newer.mkdir()
    (newer / "state.json").write_text(json.dumps({"format": "relex-train-state", "version": 99}))
    with pytest.raises(RelexError, match="upgrade relex"):
        state.read_meta(newer)
    with pytest.raises(RelexError, match="not a relex training state"):
        state.read_meta(tmp_path)


def test_missing_object_is_named(tmp_path):
    state.save(tmp_path / "s", {"a": Holder(1)})
    with pytest.raises(RelexError, match="has no b"):
        state.load(tmp_path / "s", {"a": Holder(0), "b": Holder(0)})
