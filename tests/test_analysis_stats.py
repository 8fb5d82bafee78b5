"""The statistics of `relex report` on synthetic sweeps with known answers."""

from __future__ import annotations

import numpy as np
import pytest
from synthetic_sweep import make_sweep

from relex.analysis import configs as C
from relex.analysis import effects as E
from relex.analysis.cost import gpu_count, sweep_cost
from relex.analysis.sweep_results import load_sweep

AXES = {"fgm": [0.0, 1.0], "rdrop": [0.0, 1.0], "head": ["cls", "marker"]}


def _effects(res, budget="equal"):
    found = E.axis_effects(res, E.Comparer(res, budget))
    return {(e.axis, e.value): e for e in found}


@pytest.fixture(scope="module")
def known(tmp_path_factory):
    """fgm adds +3 micro-F1, the marker head +1, R-Drop nothing; four seeds, no early stops."""
    root = tmp_path_factory.mktemp("known")
    d = make_sweep(root, axes=AXES, seeds=[1, 2, 3, 4], probs=False,
                   effect=lambda c: 3.0 * c["fgm"] + (1.0 if c["head"] == "marker" else 0.0))
    return load_sweep(d)


def test_an_axis_adding_three_points_comes_out_near_three(known):
    e = _effects(known)[("fgm", 1.0)]
    s = e.stats["micro_f1"]
    assert e.reference == 0.0 and e.pairs == 16 and e.contexts == 4  # 2 rdrop x 2 head, 4 seeds
    assert s.estimate == pytest.approx(3.0, abs=0.5)
    assert s.low > 0 and s.low < s.estimate < s.high and s.verdict == "better"
    assert e.stats["auprc"].estimate == pytest.approx(3.0, abs=0.6) and e.stats["auprc"].low > 0


def test_a_null_axis_interval_contains_zero(known):
    s = _effects(known)[("rdrop", 1.0)].stats["micro_f1"]
    assert abs(s.estimate) < 0.5 and s.high - s.low < 1.5  # tight, and around 0


def test_intervals_cover_the_truth_over_repeated_sweeps(tmp_path):
    """A 95% interval: over 20 independent sweeps the null axis's interval contains 0 in most
    (binomial: 16 or more with probability > 0.98), and the +3 axis's never does."""
    covers_zero, excludes_zero = 0, 0
    for k in range(20):
        d = make_sweep(tmp_path, axes={"fgm": [0.0, 1.0], "rdrop": [0.0, 1.0]}, seeds=[1, 2, 3, 4],
                       probs=False, effect=lambda c: 3.0 * c["fgm"], rng_seed=k, name=f"s{k}")
        found = _effects(load_sweep(d))
        covers_zero += found[("rdrop", 1.0)].stats["micro_f1"].contains_zero
        excludes_zero += found[("fgm", 1.0)].stats["micro_f1"].low > 0
    assert covers_zero >= 16 and excludes_zero == 20


def test_interval_matches_scipy_bootstrap_of_the_pair_differences(known):
    from scipy.stats import bootstrap

    res = known
    comparer = E.Comparer(res)
    index = {(r["fgm"], r["rdrop"], r["head"], r["seed"]): r["trial_id"] for _, r in res.trials.iterrows()}
    by_id = res.trials.set_index("trial_id")
    diffs = [by_id.at[index[(1.0, rd, h, s)], "micro_f1"] - by_id.at[index[(0.0, rd, h, s)], "micro_f1"]
             for rd in (0.0, 1.0) for h in ("cls", "marker") for s in (1, 2, 3, 4)]
    want = bootstrap((np.array(diffs),), np.mean, method="BCa", n_resamples=E.RESAMPLES,
                     rng=np.random.default_rng(0)).confidence_interval
    got = E.axis_effects(res, comparer)[0].stats["micro_f1"]
    assert got.estimate == pytest.approx(np.mean(diffs))
    assert (got.low, got.high) == pytest.approx((want.low, want.high))


def test_few_pairs_or_one_pair(tmp_path):
    iv = E.bootstrap_mean([2.0])
    assert iv.low is None and iv.verdict == "no interval (1 pair)" and not iv.contains_zero
    same = E.bootstrap_mean([1.5, 1.5, 1.5])
    assert (same.low, same.high) == (1.5, 1.5) and same.verdict == "better"


def test_interaction_of_two_axes_is_found(tmp_path):
    d = make_sweep(tmp_path, axes=AXES, seeds=[1, 2, 3], probs=False,
                   effect=lambda c: 4.0 if c["fgm"] == 1.0 and c["rdrop"] == 1.0 else 0.0)
    res = load_sweep(d)
    assert E.is_full_factorial(res)
    found = E.interactions(res, E.Comparer(res))
    top = found[0]
    assert top.axes == ("fgm", "rdrop") and top.values == (1.0, 1.0)
    s = top.stats["micro_f1"]
    assert s.estimate == pytest.approx(4.0, abs=0.8) and s.low > 0 and s.n == 6  # 2 heads x 3 seeds
    others = [x.stats["micro_f1"] for x in found[1:]]
    assert others and all(abs(o.estimate) < 1.0 for o in others)


def test_grid_with_a_missing_combination_is_not_full_factorial(tmp_path):
    d = make_sweep(tmp_path, axes=AXES, seeds=[1], probs=False, effect=lambda c: 0.0)
    import pandas as pd

    from relex.sweep.results import TRIALS_SCHEMA, to_table, write_table

    t = pd.read_parquet(d / "trials.parquet")
    write_table(d / "trials.parquet", to_table(t.iloc[1:].to_dict("records"), TRIALS_SCHEMA))
    assert not E.is_full_factorial(load_sweep(d))


# --------------------------------------------------------------------------- ASHA bias
def _stop_every_fgm_off_trial(c, seed):
    return 2 if c["fgm"] == 0.0 else None  # "stopped" at evaluation 2: its best is far lower


@pytest.fixture(scope="module")
def asha_biased(tmp_path_factory):
    """fgm has no effect at all, but every fgm-off trial was stopped at evaluation 2."""
    d = make_sweep(tmp_path_factory.mktemp("asha"), axes=AXES, seeds=[1, 2, 3], probs=False,
                   effect=lambda c: 0.0, stop=_stop_every_fgm_off_trial)
    return load_sweep(d)


def test_equal_budget_removes_the_bias_of_early_stopping(asha_biased):
    res = asha_biased
    naive = res.scored.groupby("fgm")["micro_f1"].mean()
    assert naive[1.0] - naive[0.0] > 10  # final best vs best-at-stop: a large fake effect
    e = _effects(res, "equal")[("fgm", 1.0)]
    s = e.stats["micro_f1"]
    assert e.pairs == 12 and e.not_comparable == 0
    assert s.contains_zero and abs(s.estimate) < 1.0


def test_finished_budget_drops_pairs_with_a_stopped_trial(asha_biased):
    e = _effects(asha_biased, "finished")
    assert e[("fgm", 1.0)].pairs == 0 and e[("fgm", 1.0)].not_comparable == 12
    assert not e[("fgm", 1.0)].stats
    # rdrop pairs match fgm-on with fgm-on and fgm-off with fgm-off: only the former are finished
    assert e[("rdrop", 1.0)].pairs == 6 and e[("rdrop", 1.0)].not_comparable == 6


def test_at_budget_takes_the_best_checkpoint_up_to_that_evaluation(asha_biased):
    res = asha_biased
    comparer = E.Comparer(res)
    tid = res.scored[res.scored["fgm"] == 1.0]["trial_id"].iloc[0]
    h = res.history[res.history["trial_id"] == tid].sort_values("iteration")
    got = comparer.at_budget(tid, 2)
    first_two = h[h["iteration"] <= 2]
    best = first_two.iloc[int(np.argmax(first_two["micro_f1"]))]
    assert got["micro_f1"] == best["micro_f1"] and got["auprc"] == best["auprc"]


# ------------------------------------------------------------------------- by config
def test_by_config_ranks_means_and_flags_noise():
    rows = []
    for tid, (head, f1s) in enumerate([("cls", [70.0, 71.0, 72.0]), ("marker", [71.0, 72.0, 71.5]),
                                       ("rbert", [50.0, 51.0, 52.0])]):
        for s, f in zip((1, 2, 3), f1s):
            rows.append({"trial_id": f"t{tid}{s}", "status": "TERMINATED", "head": head, "seed": s,
                         "micro_f1": f, "auprc": f - 1})
    rows.append({"trial_id": "t99", "status": "ERROR", "head": "cls", "seed": 4, "micro_f1": None})
    groups = C.by_config(rows)
    assert [g.config["head"] for g in groups] == ["marker", "cls", "rbert"]
    assert [g.verdict for g in groups] == ["top", "within noise", "below"]
    top = groups[0]
    assert top.n == 3 and top.mean() == pytest.approx(71.5) and top.sd() == pytest.approx(0.5)
    lo, hi = top.ci()
    from scipy import stats

    half = stats.t.ppf(0.975, 2) * 0.5 / np.sqrt(3)
    assert (lo, hi) == pytest.approx((71.5 - half, 71.5 + half))
    assert groups[1].statuses == {"TERMINATED": 3, "ERROR": 1} and groups[1].n == 3
    assert C.noise_verdict([70.0], [69.0]) == "? (1 seed)"


def test_identical_results_are_flagged(tmp_path):
    base = {"status": "TERMINATED", "micro_f1": 60.0, "auprc": 55.0, "accuracy": 70.0, "val_loss": 0.9}
    rows = [{**base, "trial_id": "t000", "head": "cls"}, {**base, "trial_id": "t001", "head": "marker"},
            {**base, "trial_id": "t002", "micro_f1": 61.0}, {**base, "trial_id": "t003", "micro_f1": 62.0}]
    for tid, fill in (("t002", 0.25), ("t003", 0.25)):
        np.save(tmp_path / f"{tid}.npy", np.full((4, 2), fill, dtype=np.float32))
    groups = C.identical_results(rows, lambda t: tmp_path / f"{t}.npy")
    assert [(g.trial_ids, g.what) for g in groups] == [
        (["t000", "t001"], "metrics"), (["t002", "t003"], "validation probabilities")]
    assert C.identical_results(rows[2:3] + rows[3:4]) == []  # metrics differ, no probabilities


# ------------------------------------------------------------------------------- cost
def test_cost_per_status_and_asha_savings(asha_biased):
    c = sweep_cost(asha_biased)
    by = c.by_status.set_index("status")
    # 24 trials: 12 fgm-on ran 8 evaluations (80 s), 12 fgm-off stopped at 2 (20 s)
    assert by.at["TERMINATED", "trials"] == 12 and by.at["TERMINATED", "trial_s"] == pytest.approx(960)
    assert by.at["STOPPED_EARLY", "trial_s"] == pytest.approx(240)
    assert c.total_gpu_s == pytest.approx(1200)  # one GPU each
    assert c.stopped == 12 and c.saved_s == pytest.approx(12 * (80 - 20))
    assert c.saved_share == pytest.approx(100 * 720 / (1200 + 720))


def test_gpu_count():
    assert gpu_count("0,1:NVIDIA H100") == 2 and gpu_count("3") == 1
    assert gpu_count("") == 0 and gpu_count(None) == 0
