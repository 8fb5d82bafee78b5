"""LLRD parameter groups: layer k gets lr·decay^(L−k) in every supported family."""

from __future__ import annotations

import pytest
import torch
import transformers
from torch import nn

from relex.config import TrialConfig
from relex.errors import RelexError
from relex.model import build_model
from relex.train.techniques.llrd import find_layers, param_groups

FAMILIES = {"bert": (transformers.BertConfig, transformers.BertModel),
            "roberta": (transformers.RobertaConfig, transformers.RobertaModel),
            "electra": (transformers.ElectraConfig, transformers.ElectraModel),
            "xlmr": (transformers.XLMRobertaConfig, transformers.XLMRobertaModel)}
L = 3


def tiny_model(tmp_path, family, **cfg):
    kw = dict(vocab_size=50, hidden_size=32, num_hidden_layers=L, num_attention_heads=2,
              intermediate_size=37, max_position_embeddings=320)
    if family == "electra":
        kw["embedding_size"] = 16
    c, m = FAMILIES[family]
    m(c(**kw)).save_pretrained(tmp_path / family)
    return build_model(TrialConfig(**cfg), tmp_path / family, 4, 54)


def lr_of(groups):
    out = {}
    for g in groups:
        for p in g["params"]:
            assert id(p) not in out, "a parameter is in two groups"
            out[id(p)] = (g["lr"], g["weight_decay"])
    return out


@pytest.mark.parametrize("family", list(FAMILIES))
def test_layer_k_gets_lr_times_decay_to_the_L_minus_k(tmp_path, family):
    model = tiny_model(tmp_path, family, head="rbert", erpe=True, erpe_clip=4)
    lr, decay, wd = 1e-3, 0.8, 0.05
    groups = param_groups(model, lr, decay, wd)
    got = lr_of(groups)
    params = [p for p in model.parameters() if p.requires_grad]
    assert set(got) == {id(p) for p in params}  # every parameter exactly once
    _, layers = find_layers(model.encoder)
    assert len(layers) == L
    for k, layer in enumerate(layers, start=1):
        for p in layer.parameters():
            assert got[id(p)][0] == pytest.approx(lr * decay ** (L - k))
    emb_params = list(model.encoder.embeddings.parameters()) + list(model.erpe.parameters())
    if family == "electra":
        emb_params += list(model.encoder.embeddings_project.parameters())
    for p in emb_params:
        assert got[id(p)][0] == pytest.approx(lr * decay ** L)
    for p in model.head.parameters():
        assert got[id(p)][0] == lr
    # weight decay: none on biases and LayerNorm weights, full elsewhere
    for name, p in model.named_parameters():
        in_norm = "LayerNorm" in name
        if name.endswith("bias") or in_norm:
            assert got[id(p)][1] == 0.0, name
        else:
            assert got[id(p)][1] == wd, name
    # the optimizer takes the groups as they are
    torch.optim.AdamW(groups)


@pytest.mark.parametrize("family", ["bert", "electra"])
def test_decay_one_gives_every_group_the_same_rate(tmp_path, family):
    model = tiny_model(tmp_path, family, head="marker")
    groups = param_groups(model, 2e-5, 1.0, 0.01)
    assert {g["lr"] for g in groups} == {2e-5}
    assert len(lr_of(groups)) == len(list(model.parameters()))


def test_head_lr_overrides_the_head_rate_only(tmp_path):
    model = tiny_model(tmp_path, "roberta", head="cls")
    got = lr_of(param_groups(model, 1e-4, 0.5, 0.0, head_lr=1e-3))
    assert all(got[id(p)][0] == 1e-3 for p in model.head.parameters())
    _, layers = find_layers(model.encoder)
    assert all(got[id(p)][0] == 1e-4 for p in layers[-1].parameters())


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 4)
        self.norm = nn.LayerNorm(4)


class OddEncoder(nn.Module):
    """No standard path: layers live under an unusual name."""

    def __init__(self, n=3, nested=True):
        super().__init__()
        self.config = type("Cfg", (), {"num_hidden_layers": n})()
        self.embeddings = nn.Embedding(10, 4)
        self.stack = nn.Module()
        self.stack.blocks = nn.ModuleList(Block() for _ in range(n))


class Wrapper(nn.Module):
    def __init__(self, encoder):
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(4, 2)


def test_generic_search_finds_an_unusually_named_layer_list():
    model = Wrapper(OddEncoder())
    name, layers = find_layers(model.encoder)
    assert name == "stack.blocks" and layers is model.encoder.stack.blocks
    got = lr_of(param_groups(model, 1.0, 0.5, 0.1))
    assert got[id(model.encoder.stack.blocks[0].lin.weight)] == (0.25, 0.1)
    assert got[id(model.encoder.stack.blocks[2].norm.weight)] == (1.0, 0.0)
    assert got[id(model.encoder.embeddings.weight)] == (0.125, 0.1)


def test_model_without_a_layer_list_is_a_clear_error_only_when_decaying():
    enc = OddEncoder()
    enc.stack.blocks = nn.ModuleList([Block()])  # 1 block, config says 3: not the layer list
    model = Wrapper(enc)
    with pytest.raises(RelexError, match="llrd: cannot find the transformer layer list"):
        param_groups(model, 1e-3, 0.9, 0.0)
    groups = param_groups(model, 1e-3, 1.0, 0.0)
    assert {g["lr"] for g in groups} == {1e-3}
