"""build_model, heads and resizing on tiny random encoders of each supported family."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import transformers

from relex.config import TrialConfig
from relex.errors import RelexError
from relex.model import RelexModel, build_model
from relex.model.heads import ClsHead, MarkerHead, RBertHead, span_mean

VOCAB = 60
C = 5


def save_tiny(path, family: str = "roberta", layers: int = 2):
    kw = dict(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=layers, num_attention_heads=2,
              intermediate_size=37, max_position_embeddings=320)
    cls = {"bert": (transformers.BertConfig, transformers.BertModel),
           "roberta": (transformers.RobertaConfig, transformers.RobertaModel),
           "electra": (transformers.ElectraConfig, transformers.ElectraModel),
           "xlmr": (transformers.XLMRobertaConfig, transformers.XLMRobertaModel)}[family]
    if family == "electra":
        kw["embedding_size"] = 16
    torch.manual_seed(0)
    cls[1](cls[0](**kw)).save_pretrained(path)
    return path


def make_batch(B=3, T=12, vocab=VOCAB, pad=None):
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(5, vocab, (B, T), generator=g)
    mask = torch.ones(B, T, dtype=torch.long)
    if pad is not None:  # right padding on the last row
        ids[-1, T - 3:] = pad
        mask[-1, T - 3:] = 0
    return {
        "input_ids": ids, "attention_mask": mask,
        "subj_pos": torch.tensor([1, 6, 2])[:B], "obj_pos": torch.tensor([5, 1, 7])[:B],
        "subj_span": torch.tensor([[2, 3], [7, 8], [3, 3]])[:B],
        "obj_span": torch.tensor([[6, 7], [2, 4], [8, 8]])[:B],
        "labels": torch.tensor([0, 1, 2])[:B], "index": torch.arange(B),
    }


@pytest.mark.parametrize("family", ["bert", "roberta", "electra", "xlmr"])
@pytest.mark.parametrize("head", ["cls", "marker", "rbert"])
def test_each_head_on_each_family_gives_batch_by_labels(tmp_path, family, head):
    path = save_tiny(tmp_path / family, family)
    model = build_model(TrialConfig(head=head), path, C, VOCAB)
    assert isinstance(model, RelexModel)
    assert isinstance(model.encoder, transformers.PreTrainedModel)
    logits = model(make_batch())
    assert logits.shape == (3, C)
    assert torch.isfinite(logits).all()


def test_resize_grows_embeddings_for_added_tokens_and_keeps_old_rows(tmp_path):
    path = save_tiny(tmp_path / "r", "roberta")
    original = transformers.AutoModel.from_pretrained(path).get_input_embeddings().weight.clone()
    model = build_model(TrialConfig(), path, C, VOCAB + 7)
    emb = model.word_embeddings()
    assert emb is model.encoder.get_input_embeddings()
    assert emb.num_embeddings == VOCAB + 7
    assert model.encoder.config.vocab_size == VOCAB + 7
    assert torch.equal(emb.weight[:VOCAB], original)
    batch = make_batch()
    batch["input_ids"][0, 4] = VOCAB + 6  # an added marker token id
    assert model(batch).shape == (3, C)
    # a tokenizer smaller than the table never shrinks it
    assert build_model(TrialConfig(), path, C, VOCAB - 10).word_embeddings().num_embeddings == VOCAB


def test_unloadable_backbone_is_a_relex_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(RelexError, match="cannot load backbone"):
        build_model(TrialConfig(), tmp_path / "empty", C, VOCAB)


def test_config_only_build_matches_architecture(tmp_path):
    path = save_tiny(tmp_path / "r", "roberta")
    a = build_model(TrialConfig(head="rbert"), path, C, VOCAB + 3)
    b = build_model(TrialConfig(head="rbert"), path, C, VOCAB + 3, pretrained=False)
    assert {k: v.shape for k, v in a.state_dict().items()} == \
        {k: v.shape for k, v in b.state_dict().items()}


def _hidden(B=3, T=12, H=32):
    return torch.randn(B, T, H, generator=torch.Generator().manual_seed(3))


def test_cls_head_is_dense_tanh_linear_on_first_token():
    head = ClsHead(32, C, 0.1).eval()
    h, batch = _hidden(), make_batch()
    want = head.out_proj(torch.tanh(head.dense(h[:, 0])))
    assert torch.allclose(head(h, batch), want, atol=1e-6)
    h2 = h.clone()
    h2[:, 1:] += 5.0
    assert torch.equal(head(h2, batch), head(h, batch))


def test_marker_head_reads_exactly_the_states_at_subj_and_obj_pos():
    head = MarkerHead(32, C, 0.1).eval()
    h, batch = _hidden(), make_batch()
    rows = torch.arange(3)
    feat = torch.cat([h[rows, batch["subj_pos"]], h[rows, batch["obj_pos"]]], dim=-1)
    want = head.out_proj(torch.relu(head.dense(feat)))
    base = head(h, batch)
    assert torch.allclose(base, want, atol=1e-6)
    # change every other position: logits unchanged
    keep = torch.zeros(3, 12, dtype=torch.bool)
    keep[rows, batch["subj_pos"]] = True
    keep[rows, batch["obj_pos"]] = True
    h2 = torch.where(keep.unsqueeze(-1), h, h + torch.randn_like(h) * 3)
    assert torch.equal(head(h2, batch), base)
    # change only the subject marker state of row 1: only row 1 changes
    h3 = h.clone()
    h3[1, batch["subj_pos"][1]] += 3.0
    out = head(h3, batch)
    assert torch.equal(out[[0, 2]], base[[0, 2]])
    assert not torch.allclose(out[1], base[1])


def test_marker_head_inside_model_uses_encoder_states_at_marker_positions(tmp_path):
    path = save_tiny(tmp_path / "b", "bert")
    model = build_model(TrialConfig(head="marker"), path, C, VOCAB).eval()
    batch = make_batch()
    with torch.no_grad():
        h = model.encode(batch)
        rows = torch.arange(3)
        feat = torch.cat([h[rows, batch["subj_pos"]], h[rows, batch["obj_pos"]]], -1)
        want = model.head.out_proj(torch.relu(model.head.dense(feat)))
        assert torch.allclose(model(batch), want, atol=1e-5)


def test_span_mean_is_mean_over_inclusive_span():
    h = _hidden()
    span = torch.tensor([[2, 3], [0, 0], [4, 11]])
    got = span_mean(h, span)
    for b, (s, e) in enumerate(span.tolist()):
        assert torch.allclose(got[b], h[b, s:e + 1].mean(0), atol=1e-6)


@pytest.mark.parametrize("extra", [False, True])
def test_rbert_head_matches_hand_computation(extra):
    head = RBertHead(32, C, 0.1, layers="split", extra=extra).eval()
    h, batch = _hidden(), make_batch()
    cls = head.cls_fc.linear(torch.tanh(h[:, 0]))
    e1 = head.subj_fc.linear(torch.tanh(span_mean(h, batch["subj_span"])))
    e2 = head.obj_fc.linear(torch.tanh(span_mean(h, batch["obj_span"])))
    feats = [cls, e1, e2] + ([(e1 - e2).abs(), e1 * e2] if extra else [])
    want = head.classifier.linear(torch.cat(feats, -1))
    assert head.classifier.linear.in_features == (5 if extra else 3) * 32
    assert torch.allclose(head(h, batch), want, atol=1e-6)


def test_rbert_split_has_two_entity_layers_shared_has_one():
    split = RBertHead(32, C, 0.1, layers="split")
    shared = RBertHead(32, C, 0.1, layers="shared")
    n_split = sum(p.numel() for p in split.parameters())
    n_shared = sum(p.numel() for p in shared.parameters())
    assert n_split - n_shared == 32 * 32 + 32  # exactly one more H×H linear layer
    assert split.subj_fc.linear.weight is not split.obj_fc.linear.weight
    # shared: both entities pass through the same weights — swapping the spans swaps e1/e2
    shared.eval()
    h, batch = _hidden(), make_batch()
    swapped = dict(batch, subj_span=batch["obj_span"], obj_span=batch["subj_span"])
    e = shared.entity_fc
    s1 = e(span_mean(h, batch["subj_span"]))
    s2 = e(span_mean(h, swapped["subj_span"]))
    assert torch.allclose(s2, e(span_mean(h, batch["obj_span"])))
    assert not torch.allclose(s1, s2)
    # a shared head saves to safetensors (no aliased tensors in its state dict)
    from safetensors.torch import save

    save(shared.state_dict())


def test_dropout_uses_head_dropout(tmp_path):
    path = save_tiny(tmp_path / "b", "bert")
    model = build_model(TrialConfig(head="rbert", head_dropout=0.3), path, C, VOCAB)
    rates = {m.p for m in model.head.modules() if isinstance(m, torch.nn.Dropout)}
    assert rates == {0.3}


def test_all_techniques_compose_in_one_training_step_and_fit_a_batch(tmp_path):
    """ERPE + rbert + focal/class-balanced + R-Drop + FGM + LLRD + HNM weights in one loop."""
    from relex.model.erpe import span_distances
    from relex.train.techniques.fgm import FGM
    from relex.train.techniques.hnm import HardNegativeMiner
    from relex.train.techniques.llrd import param_groups
    from relex.train.techniques.losses import make_loss
    from relex.train.techniques.rdrop import double_batch, rdrop_loss, split_logits

    path = save_tiny(tmp_path / "r", "roberta")
    cfg = TrialConfig(head="rbert", rbert_extra=True, erpe=True, erpe_clip=4, loss="focal",
                      class_balanced=0.9, rdrop=1.0, fgm=0.5, llrd=0.8)
    torch.manual_seed(0)
    model = build_model(cfg, path, C, VOCAB + 2)
    batch = make_batch()
    batch["subj_dist"] = span_distances(batch["subj_span"], 12, 4)
    batch["obj_dist"] = span_distances(batch["obj_span"], 12, 4)
    loss_fn = make_loss(cfg, np.array([5, 3, 2, 0, 1]))
    miner = HardNegativeMiner(0, 0.5, 2.0, "weight")
    miner.update(batch["index"].numpy(), np.array([0.3, 0.1, 0.2]), batch["labels"].numpy())
    weights = torch.from_numpy(miner.weights(3))
    assert weights.tolist() == [2.0, 1.0, 1.0]
    opt = torch.optim.AdamW(param_groups(model, 1e-3, cfg.llrd, 0.01))
    fgm = FGM(model, cfg.fgm)

    def loss_of():
        l1, l2 = split_logits(model(double_batch(batch)))
        return rdrop_loss(l1, l2, batch["labels"], cfg.rdrop, loss_fn, weights)

    model.eval()
    with torch.no_grad():
        start = loss_fn(model(batch), batch["labels"]).item()
    model.train()
    for _ in range(8):
        loss_of().backward()
        assert fgm.attack()
        loss_of().backward()
        fgm.restore()
        opt.step()
        opt.zero_grad()
    model.eval()
    with torch.no_grad():
        end = loss_fn(model(batch), batch["labels"]).item()
    assert end < 0.5 * start
    assert model.erpe.subj.weight.abs().sum() > 0  # ERPE moved off its zero init


def test_max_length_beyond_the_position_table_is_one_clear_error(tmp_path):
    """relex/tiny and klue/roberta-base hold 512 positions (RoBERTa numbers from pad+1)."""
    from transformers import RobertaConfig, RobertaModel

    from relex.config import TrialConfig
    from relex.errors import RelexError
    from relex.model import build_model
    from relex.model.backbone import position_limit

    conf = RobertaConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=32, max_position_embeddings=66, pad_token_id=1)
    RobertaModel(conf).save_pretrained(tmp_path / "enc")
    assert position_limit(conf) == 64
    build_model(TrialConfig(max_length=64), tmp_path / "enc", 3, 50)
    with pytest.raises(RelexError, match=r"max_length=65 exceeds .* \(64 positions\)"):
        build_model(TrialConfig(max_length=65), tmp_path / "enc", 3, 50)
