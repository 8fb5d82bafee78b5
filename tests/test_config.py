"""TrialConfig: the one configuration, validated before any work starts."""

from __future__ import annotations

import pytest

from relex.config import TrialConfig
from relex.errors import RelexError


def test_defaults_are_valid_and_round_trip_json():
    cfg = TrialConfig()
    cfg.validate()
    again = TrialConfig.from_json(cfg.to_json())
    assert again == cfg


def test_coercion_of_cli_and_json_values():
    cfg = TrialConfig.from_dict({"lr": "3e-5", "erpe": "true", "epochs": 2.0, "rdrop": 1})
    assert cfg.lr == 3e-5 and cfg.erpe is True and cfg.epochs == 2 and cfg.rdrop == 1.0


@pytest.mark.parametrize(
    "data, fragment",
    [
        ({"lrr": 1e-5}, "did you mean 'lr'"),
        ({"marker": "typed"}, "marker='typed' is invalid"),
        ({"head": "pooler"}, "choose one of cls, marker, rbert"),
        ({"epochs": 0}, "epochs=0 is invalid"),
        ({"epochs": 1.5}, "expected int"),
        ({"llrd": 1.2}, "llrd=1.2"),
        ({"class_balanced": 1.0}, "class_balanced"),
        ({"erpe": "maybe"}, "expected bool"),
        ({"fgm": -0.1}, "fgm=-0.1"),
        ({"tiny_hidden": 130, "tiny_heads": 4}, "divisible"),
    ],
)
def test_invalid_values_name_the_field(data, fragment):
    with pytest.raises(RelexError) as e:
        TrialConfig.from_dict(data, where="jobs/x.py")
    assert fragment in str(e.value)
    assert str(e.value).startswith("jobs/x.py:")


def test_replace_validates():
    cfg = TrialConfig()
    assert cfg.replace(head="rbert").head == "rbert"
    with pytest.raises(RelexError):
        cfg.replace(head="nope")


def test_short_name_lists_only_changes():
    assert TrialConfig().short_name() == "default"
    assert TrialConfig(rdrop=2.0, erpe=True).short_name() == "erpe=True,rdrop=2.0"
