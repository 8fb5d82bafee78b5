"""Each decision on synthetic probabilities with a known right answer."""

from __future__ import annotations

import numpy as np
import pytest

from relex.analysis import decisions as D


def _draw(probs, rng):
    """One label per row drawn from its distribution."""
    return np.minimum((probs.cumsum(1) < rng.random((len(probs), 1))).sum(1), probs.shape[1] - 1)


def _softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def test_temperature_recovers_a_known_temperature():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, size=(20000, 5))
    true_t = 2.5
    truth = _softmax(logits / true_t)  # how the labels are really drawn
    y = _draw(truth, rng)
    model = _softmax(logits)  # an over-confident model: its logits are not divided by 2.5
    fitted = D.fit_temperature(model, y)
    assert fitted == pytest.approx(true_t, rel=0.05)
    # it calibrates: NLL and ECE drop, the argmax stays
    cal = D.apply_temperature(model, fitted)
    assert D.nll(cal, y) < D.nll(model, y) - 0.05
    assert D.expected_calibration_error(cal, y) < D.expected_calibration_error(model, y) / 3
    assert (cal.argmax(1) == model.argmax(1)).all()


def test_ece_of_perfectly_calibrated_and_of_overconfident_probabilities():
    # confidence 0.8 on every row, right on exactly 80% of them: ECE 0
    p = np.tile([0.8, 0.2], (10, 1))
    y = np.array([0] * 8 + [1] * 2)
    assert D.expected_calibration_error(p, y) == pytest.approx(0.0)
    y_bad = np.array([0] * 4 + [1] * 6)  # right on 40%: ECE 0.4
    assert D.expected_calibration_error(p, y_bad) == pytest.approx(0.4)


def test_type_constraint_zeroes_exactly_the_unseen_pairs():
    names = ["no_relation", "per:employee_of", "org:founded", "per:origin"]
    # training: (PER, ORG) seen with employee_of; (ORG, DAT) with founded and no_relation
    pairs = D.fit_type_pairs(["PER", "ORG", "ORG", "PER"], ["ORG", "DAT", "DAT", "ORG"], [1, 2, 0, -1])
    assert pairs == {("PER", "ORG"): frozenset({1}), ("ORG", "DAT"): frozenset({0, 2})}
    probs = np.full((3, 4), 0.25)
    subj, obj = ["PER", "ORG", "LOC"], ["ORG", "DAT", "PER"]
    mask = D.type_mask(pairs, subj, obj, 4, negative_id=0)
    assert mask.tolist() == [[True, True, False, False],   # employee_of + negative
                             [True, False, True, False],   # founded + negative
                             [True, True, True, True]]     # a pair never seen: untouched
    out = D.apply_type_constraint(probs, mask, 0)
    assert (out[~mask] == 0).all() and (out[mask] > 0).all()
    np.testing.assert_allclose(out.sum(1), 1.0)
    np.testing.assert_allclose(out[0], [0.5, 0.5, 0, 0])  # the allowed mass keeps its ratios
    np.testing.assert_allclose(out[2], probs[2])


def test_type_constraint_through_decisions_uses_label_names():
    names = ["no_relation", "a", "b"]
    pairs = D.fit_type_pairs(["X"], ["Y"], [2])
    dec = D.Decisions(type_pairs={k: tuple(names[i] for i in v) for k, v in pairs.items()})
    dec = D.Decisions.from_dict(dec.to_dict())  # survives JSON
    p, applied, _ = dec.apply(np.array([[0.2, 0.7, 0.1]]), names, "no_relation",
                              subj_types=["X"], obj_types=["Y"])
    np.testing.assert_allclose(p, [[2 / 3, 0, 1 / 3]])
    assert applied == ["entity-type-pair constraint (1 pairs)"]


def _gaussian_task(n, prior, rng):
    """1-d Gaussian classes with means 0, 2, 4 (sd 1): exact posteriors for any prior."""
    means = np.array([0.0, 2.0, 4.0])
    y = rng.choice(3, size=n, p=prior)
    x = rng.normal(means[y], 1.0)
    lik = np.exp(-0.5 * (x[:, None] - means[None, :]) ** 2)
    return x, y, lik


def test_em_recovers_a_shifted_prior():
    rng = np.random.default_rng(1)
    source = np.array([0.6, 0.3, 0.1])
    target = np.array([0.2, 0.3, 0.5])
    _, y, lik = _gaussian_task(30000, target, rng)
    posterior_under_source = lik * source
    posterior_under_source /= posterior_under_source.sum(1, keepdims=True)
    adjusted, prior, iters = D.em_label_shift(posterior_under_source, source)
    np.testing.assert_allclose(prior, target, atol=0.02)
    assert iters > 1
    # the adjusted posteriors classify the shifted rows better than the unadjusted ones
    assert (adjusted.argmax(1) == y).mean() > (posterior_under_source.argmax(1) == y).mean() + 0.02
    # no shift: the prior stays where it was
    _, y0, lik0 = _gaussian_task(30000, source, rng)
    post0 = lik0 * source / (lik0 * source).sum(1, keepdims=True)
    np.testing.assert_allclose(D.em_label_shift(post0, source)[1], source, atol=0.02)


def test_label_shift_warns_when_calibration_is_poor():
    names = ["no_relation", "a"]
    p = np.array([[0.7, 0.3], [0.4, 0.6]])
    good = D.Decisions(source_prior=[0.5, 0.5], validation_ece=0.01)
    bad = D.Decisions(source_prior=[0.5, 0.5], validation_ece=0.2)
    _, applied, warn = good.apply(p, names, "no_relation", label_shift=True)
    assert applied[0].startswith("label-shift EM") and warn == []
    _, _, warn = bad.apply(p, names, "no_relation", label_shift=True)
    assert len(warn) == 1 and "ECE" in warn[0] and "0.200" in warn[0]
    # off by default: nothing applied
    out, applied, _ = good.apply(p, names, "no_relation")
    assert applied == [] and np.allclose(out, p)


def test_bias_finds_the_interval_that_separates_the_rows():
    # d = log p(best positive) - log p(negative); negatives have d in [-1, 0.2], positives whose
    # best positive is right have d in [0.8, 2]: any bias in (0.2, 0.8) is perfect; midpoint 0.5
    d = np.array([-1.0, -0.5, 0.2, 0.8, 1.2, 2.0])
    y = np.array([0, 0, 0, 1, 2, 1])
    best_pos = np.array([1, 2, 1, 1, 2, 1])
    logp = np.full((6, 3), -20.0)
    logp[:, 0] = -1.0
    logp[np.arange(6), best_pos] = -1.0 + d
    probs = np.exp(logp) / np.exp(logp).sum(1, keepdims=True)
    bias, f1 = D.fit_bias(probs, y, 0)
    assert bias == pytest.approx(0.5)
    assert f1 == pytest.approx(100.0)
    from relex import metrics as M

    before = M.compute(y, probs, ["n", "a", "b"], "n", per_class=False)["micro_f1"]
    after = M.compute(y, D.apply_bias(probs, bias, 0), ["n", "a", "b"], "n", per_class=False)["micro_f1"]
    assert before < 100.0 and after == pytest.approx(100.0)


def _micro_f1(y, pred, neg=0):
    tp = ((pred == y) & (y != neg)).sum()
    return 200.0 * tp / ((pred != neg).sum() + (y != neg).sum())


def test_bias_search_is_exact_against_a_dense_grid():
    from relex import metrics as M

    rng = np.random.default_rng(3)
    probs = _softmax(rng.normal(0, 1.5, size=(300, 6)))
    y = rng.choice(6, size=300, p=[0.4, 0.12, 0.12, 0.12, 0.12, 0.12])
    bias, f1 = D.fit_bias(probs, y, 0)
    dense = max(_micro_f1(y, D.apply_bias(probs, b, 0).argmax(1)) for b in np.linspace(-6, 6, 1201))
    assert f1 >= dense - 1e-9  # no grid point beats the exact search
    names = [str(i) for i in range(6)]
    assert M.compute(y, D.apply_bias(probs, bias, 0), names, "0", per_class=False)["micro_f1"] == pytest.approx(f1)
    assert f1 > M.compute(y, probs, names, "0", per_class=False)["micro_f1"]


def test_bias_is_zero_when_zero_is_already_best():
    probs = np.array([[0.9, 0.1], [0.1, 0.9]])
    assert D.fit_bias(probs, np.array([0, 1]), 0)[0] == 0.0


def test_cross_fitted_effects_report_each_stage_honestly():
    rng = np.random.default_rng(4)
    n = 2000
    logits = rng.normal(0, 2, size=(n, 4))
    logits[:, 0] += 1.0
    y = _draw(_softmax(logits / 2.0), rng)
    model = _softmax(logits)  # over-confident by a factor 2
    names = ["no_relation", "a", "b", "c"]
    parts = [np.arange(0, n, 2), np.arange(1, n, 2)]
    rows = D.cross_fit_effects(model, y, parts, names, "no_relation")
    assert [r["stage"] for r in rows] == ["none", "temperature", "no_relation_bias"]
    none, temp, bias = rows
    assert temp["nll"] < none["nll"] and temp["ece"] < none["ece"]
    assert temp["micro_f1"] == pytest.approx(none["micro_f1"])  # temperature keeps the argmax
    assert bias["micro_f1"] != temp["micro_f1"]
