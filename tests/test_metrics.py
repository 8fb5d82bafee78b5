"""KLUE-RE metrics against direct scikit-learn computations (metrics.md)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import auc, f1_score, precision_recall_curve

from relex import metrics


def _random_probs(rng, n, c):
    logits = rng.normal(size=(n, c)) * 3
    return metrics.softmax(logits)


def _klue_auprc(y, probs):
    """KLUE's reference computation: every class, trapezoidal area, unweighted mean."""
    areas = []
    for c in range(probs.shape[1]):
        p, r, _ = precision_recall_curve(y == c, probs[:, c])
        areas.append(auc(r, p))
    return np.mean(areas) * 100


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_sklearn_on_random_data(seed):
    rng = np.random.default_rng(seed)
    names = ["no_relation"] + [f"rel{i}" for i in range(9)]
    n = 500
    y = rng.integers(0, len(names), size=n)
    y[: len(names)] = np.arange(len(names))  # every class present
    probs = _random_probs(rng, n, len(names))
    out = metrics.compute(y, probs, names, negative="no_relation")
    preds = probs.argmax(1)
    assert out["micro_f1"] == pytest.approx(
        f1_score(y, preds, average="micro", labels=list(range(1, len(names)))) * 100, abs=1e-12
    )
    assert out["auprc"] == pytest.approx(_klue_auprc(y, probs), abs=1e-12)
    assert out["accuracy"] == pytest.approx((preds == y).mean() * 100, abs=1e-12)
    assert out["auprc_classes"] == len(names) and out["auprc_skipped"] == []
    assert out["n"] == n


def test_negative_label_not_first_and_label_order_invariance():
    rng = np.random.default_rng(3)
    names = ["a", "b", "관계없음", "c"]
    y = rng.integers(0, 4, size=200)
    y[:4] = np.arange(4)
    probs = _random_probs(rng, 200, 4)
    out = metrics.compute(y, probs, names, negative="관계없음")
    perm = np.array([3, 2, 0, 1])  # new column j holds old column perm[j]
    inv = np.argsort(perm)
    out2 = metrics.compute(inv[y], probs[:, perm], [names[i] for i in perm], negative="관계없음")
    for k in ("micro_f1", "auprc", "accuracy"):
        assert out[k] == pytest.approx(out2[k], abs=1e-9)


def test_predicting_negative_for_negative_counts_for_nothing():
    names = ["no_relation", "r1", "r2"]
    y = np.array([0, 0, 1, 2])
    probs = np.array([[0.9, 0.05, 0.05], [0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.1, 0.8, 0.1]])
    out = metrics.compute(y, probs, names)
    # TP=1 (r1), FP=1 (r1 for r2), FN=1 (r2): P=R=F1=0.5
    assert out["micro_f1"] == pytest.approx(50.0)
    assert out["accuracy"] == pytest.approx(75.0)


def test_all_negative_gold_and_predictions():
    names = ["no_relation", "r1", "r2"]
    y = np.zeros(10, dtype=int)
    probs = np.tile([0.8, 0.1, 0.1], (10, 1))
    out = metrics.compute(y, probs, names)
    assert out["micro_f1"] == 0.0  # no real relation predicted or gold: nothing to score
    assert out["accuracy"] == 100.0
    assert out["auprc_classes"] == 1 and out["auprc_skipped"] == ["r1", "r2"]
    assert np.isfinite(out["auprc"])


def test_class_absent_from_gold_is_skipped_not_nan():
    rng = np.random.default_rng(4)
    names = ["no_relation", "r1", "r2", "r3"]
    y = rng.choice([0, 1, 2], size=300)  # r3 never gold
    probs = _random_probs(rng, 300, 4)
    out = metrics.compute(y, probs, names)
    assert out["auprc_skipped"] == ["r3"]
    expected = np.mean(
        [auc(*precision_recall_curve(y == c, probs[:, c])[1::-1]) for c in range(3)]
    ) * 100
    assert out["auprc"] == pytest.approx(expected, abs=1e-12)
    assert np.isfinite(out["auprc"])


def test_per_class_report():
    names = ["no_relation", "r1", "r2"]
    y = np.array([0, 1, 1, 2])
    probs = np.eye(3)[[0, 1, 2, 2]] * 0.9 + 0.1 / 3
    out = metrics.compute(y, probs, names)
    pc = out["per_class"]
    assert pc["r1"]["precision"] == pytest.approx(100.0)
    assert pc["r1"]["recall"] == pytest.approx(50.0)
    assert pc["r2"]["support"] == 1 and pc["r2"]["precision"] == pytest.approx(50.0)


def test_bad_shapes_and_empty_raise():
    with pytest.raises(ValueError):
        metrics.compute([0, 1], np.ones((3, 2)) / 2, ["a", "b"])
    with pytest.raises(ValueError):
        metrics.compute([], np.zeros((0, 2)), ["a", "b"])


# ------------------------------------------------------------------ mean AP and ties
def test_mean_ap_is_sklearn_average_precision_over_present_classes():
    from sklearn.metrics import average_precision_score

    rng = np.random.default_rng(5)
    names = ["no_relation", "a", "b", "c"]
    y = rng.integers(0, 3, size=300)  # "c" never gold: skipped, as for AUPRC
    probs = _random_probs(rng, 300, 4)
    want = np.mean([average_precision_score(y == c, probs[:, c]) for c in range(3)]) * 100
    out = metrics.compute(y, probs, names)
    assert out["mean_ap"] == pytest.approx(want, abs=1e-12)


@pytest.mark.parametrize("scores", ["distinct", "rounded", "three values", "all equal"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_curves_match_sklearns_point_for_point_with_ties(scores, dtype):
    """relex draws the precision-recall curve itself (scikit-learn's input checks dominated the
    report at 1,000 trials): KLUE-AUPRC and mean AP must still be scikit-learn's to the bit."""
    from sklearn.metrics import average_precision_score

    rng = np.random.default_rng(11)
    for n in (1, 2, 7, 400):
        target = rng.random(n) < 0.3
        target[rng.integers(n)] = True  # at least one positive, as for every scored class
        raw = {"distinct": rng.random(n), "rounded": np.round(rng.random(n), 1),
               "three values": rng.integers(0, 3, n) / 2, "all equal": np.full(n, 0.5)}[scores]
        s = raw.astype(dtype)
        precision, recall, _ = precision_recall_curve(target, s)
        mine_p, mine_r = metrics._pr_curve(target, s)
        np.testing.assert_array_equal(mine_p, precision)
        np.testing.assert_array_equal(mine_r, recall)
        assert metrics._area(target, s) == pytest.approx(auc(recall, precision), abs=1e-15)
        assert metrics._step_sum(mine_p, mine_r) == pytest.approx(
            average_precision_score(target, s), abs=1e-15)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_counts_match_sklearns_f1_per_class_report_and_confusion_matrix(seed):
    """Micro-F1, the per-class report and the confusion matrix are counted with numpy; they must
    equal scikit-learn's, including classes never predicted or never gold (zero division)."""
    from sklearn.metrics import classification_report, confusion_matrix

    rng = np.random.default_rng(seed)
    names = ["no_relation", "a", "b", "c", "d"]
    y = rng.integers(0, 4, size=200)  # "d" never gold
    preds = np.where(rng.random(200) < 0.5, y, rng.integers(0, 3, size=200))  # "c", "d" rarely/never predicted
    for neg in (0, 2, None):
        positive = [i for i in range(len(names)) if i != neg]
        assert metrics.micro_f1(y, preds, len(names), neg) == pytest.approx(
            f1_score(y, preds, average="micro", labels=positive, zero_division=0) * 100, abs=1e-12)
    rep = classification_report(y, preds, labels=list(range(len(names))), target_names=names,
                                output_dict=True, zero_division=0)
    mine = metrics.per_class_scores(y, preds, names)
    for name in names:
        for key, theirs in (("precision", "precision"), ("recall", "recall"), ("f1", "f1-score")):
            assert mine[name][key] == pytest.approx(rep[name][theirs] * 100, abs=1e-12), (name, key)
        assert mine[name]["support"] == rep[name]["support"]
    np.testing.assert_array_equal(metrics.confusion(y, preds, len(names)),
                                  confusion_matrix(y, preds, labels=list(range(len(names)))))
    assert metrics.micro_f1(np.zeros(3, int), np.zeros(3, int), 3, 0) == 0.0  # nothing positive


def _type_pair_predictor(rng, n=3000, pairs=12, classes=6):
    """Scores every row by its (hidden) entity-type pair alone: a few distinct values, many ties,
    each pair mildly informative about the label."""
    pair = rng.integers(0, pairs, size=n)
    table = rng.dirichlet(np.ones(classes), size=pairs)  # label distribution of each pair
    y = np.array([rng.choice(classes, p=table[k]) for k in pair])
    return y, table[pair]


def test_ties_inflate_klue_auprc_and_tie_effect_measures_it():
    rng = np.random.default_rng(0)
    y, probs = _type_pair_predictor(rng)
    t = metrics.tie_effect(y, probs, draws=3)
    m = metrics.compute(y, probs, [f"l{i}" for i in range(6)], negative=None)
    assert t["auprc"] == pytest.approx(m["auprc"])
    assert t["tied_share"] > 0.99  # 12 distinct scores per column over 3000 rows
    assert t["shift"] > 5 and t["auprc_tie_broken"] < t["auprc"] - 5
    # broken ties give about the tie-free average precision, far below the trapezoid
    assert abs(t["auprc_tie_broken"] - m["mean_ap"]) < 2.0
    assert m["auprc"] - m["mean_ap"] > 5


def test_no_ties_no_shift():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 5, size=400)
    probs = _random_probs(rng, 400, 5)
    t = metrics.tie_effect(y, probs)
    assert t["tied_share"] == 0.0 and t["shift"] == 0.0 and t["auprc_tie_broken"] == t["auprc"]
