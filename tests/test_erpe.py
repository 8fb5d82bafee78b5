"""Entity-relative position embeddings: distances, zero init, and the inputs_embeds path."""

from __future__ import annotations

import pytest
import torch
import transformers

from relex.config import TrialConfig
from relex.model import build_model
from relex.model.erpe import EntityRelativePositions, span_distances

VOCAB = 60
C = 4


def save_tiny(path, family="roberta"):
    kw = dict(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
              intermediate_size=37, max_position_embeddings=320)
    cfg_cls, model_cls = {"bert": (transformers.BertConfig, transformers.BertModel),
                          "roberta": (transformers.RobertaConfig, transformers.RobertaModel),
                          "electra": (transformers.ElectraConfig, transformers.ElectraModel)}[family]
    if family == "electra":
        kw["embedding_size"] = 16
    torch.manual_seed(0)
    model_cls(cfg_cls(**kw)).save_pretrained(path)
    return path


def batch_with_dists(clip, T=12, pad=1):
    ids = torch.randint(5, VOCAB, (2, T), generator=torch.Generator().manual_seed(2))
    mask = torch.ones(2, T, dtype=torch.long)
    ids[1, T - 4:] = pad
    mask[1, T - 4:] = 0
    subj_span = torch.tensor([[2, 3], [6, 7]])  # row 0: subject first; row 1: object first
    obj_span = torch.tensor([[6, 8], [1, 2]])
    return {"input_ids": ids, "attention_mask": mask,
            "subj_pos": subj_span[:, 0] - 1, "obj_pos": obj_span[:, 0] - 1,
            "subj_span": subj_span, "obj_span": obj_span,
            "subj_dist": span_distances(subj_span, T, clip),
            "obj_dist": span_distances(obj_span, T, clip)}


def test_distances_for_subject_before_and_after_object():
    # t:                  0   1   2  3  4  5  6  7  8  9  10 11
    before_2_3 = [-2, -1, 0, 0, 1, 2, 3, 3, 3, 3, 3, 3]   # span [2,3], clip 3
    around_6_8 = [-3, -3, -3, -3, -2, -1, 0, 0, 0, 1, 2, 3]
    around_1_2 = [-1, 0, 0, 1, 2, 3, 3, 3, 3, 3, 3, 3]
    around_6_7 = [-3, -3, -3, -3, -2, -1, 0, 0, 1, 2, 3, 3]
    b = batch_with_dists(clip=3)
    assert b["subj_dist"].tolist() == [[d + 3 for d in before_2_3], [d + 3 for d in around_6_7]]
    assert b["obj_dist"].tolist() == [[d + 3 for d in around_6_8], [d + 3 for d in around_1_2]]


def test_erpe_module_sums_the_two_table_rows():
    erpe = EntityRelativePositions(clip=3, dim=8)
    assert torch.count_nonzero(erpe.subj.weight) == 0 and torch.count_nonzero(erpe.obj.weight) == 0
    torch.nn.init.normal_(erpe.subj.weight)
    torch.nn.init.normal_(erpe.obj.weight)
    b = batch_with_dists(clip=3)
    out = erpe(b["subj_dist"], b["obj_dist"])
    for i in range(2):
        for t in range(12):
            want = erpe.subj.weight[b["subj_dist"][i, t]] + erpe.obj.weight[b["obj_dist"][i, t]]
            assert torch.allclose(out[i, t], want)
    with pytest.raises(ValueError, match="erpe_clip"):
        erpe(b["subj_dist"] - 4, b["obj_dist"])  # unshifted distances


@pytest.mark.parametrize("family", ["roberta", "bert", "electra"])
def test_zero_init_erpe_is_a_noop_and_enters_only_via_inputs_embeds(tmp_path, family):
    path = save_tiny(tmp_path / family, family)
    torch.manual_seed(5)
    plain = build_model(TrialConfig(head="marker"), path, C, VOCAB).eval()
    torch.manual_seed(5)
    withe = build_model(TrialConfig(head="marker", erpe=True, erpe_clip=3), path, C, VOCAB).eval()
    withe.load_state_dict(plain.state_dict(), strict=False)
    batch = batch_with_dists(clip=3)
    with torch.no_grad():
        assert torch.allclose(plain(batch), withe(batch), atol=1e-6)
        # every hidden state, pads included: the ERPE path gives the encoder the positions the
        # input_ids path would (RoBERTa numbers positions past its padding index)
        assert torch.allclose(plain.encode(batch), withe.encode(batch), atol=1e-5)

        # give ERPE non-zero tables and capture what the encoder receives
        torch.nn.init.normal_(withe.erpe.subj.weight)
        torch.nn.init.normal_(withe.erpe.obj.weight)
        seen = {}
        hook = withe.encoder.register_forward_pre_hook(
            lambda mod, args, kwargs: seen.update(kwargs), with_kwargs=True)
        withe(batch)
        hook.remove()
        assert seen.get("input_ids") is None
        word = withe.word_embeddings()(batch["input_ids"])
        want = word + (withe.erpe.subj.weight[batch["subj_dist"]]
                       + withe.erpe.obj.weight[batch["obj_dist"]])
        assert torch.equal(seen["inputs_embeds"], want)
        assert torch.equal(seen["attention_mask"], batch["attention_mask"])
        assert not torch.allclose(plain(batch), withe(batch))  # now it does change the output


def test_erpe_learns_from_zero_init(tmp_path):
    path = save_tiny(tmp_path / "r")
    model = build_model(TrialConfig(head="cls", erpe=True, erpe_clip=3), path, C, VOCAB)
    batch = batch_with_dists(clip=3)
    model(batch).logsumexp(-1).sum().backward()
    assert model.erpe.subj.weight.grad.abs().sum() > 0
    assert model.erpe.obj.weight.grad.abs().sum() > 0


def test_missing_distances_are_computed_from_spans(tmp_path):
    path = save_tiny(tmp_path / "r")
    model = build_model(TrialConfig(head="rbert", erpe=True, erpe_clip=3), path, C, VOCAB).eval()
    torch.nn.init.normal_(model.erpe.subj.weight)
    batch = batch_with_dists(clip=3)
    bare = {k: v for k, v in batch.items() if not k.endswith("_dist")}
    with torch.no_grad():
        assert torch.equal(model(bare), model(batch))
