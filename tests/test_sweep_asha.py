"""relex's persistent ASHA: Ray's rule, rung records that survive a crash, replay-safe decisions."""

from __future__ import annotations

import json
import math
import random

import pytest

from relex.sweep.asha import CONTINUE, STOP, Rungs, make_scheduler


def _events(n_trials=9, n_evals=9, seed=0):
    """Sequential trials (max_concurrent=1): each trial's evaluations in order, with scores."""
    rng = random.Random(seed)
    quality = [rng.random() for _ in range(n_trials)]
    return [(f"t{i:03d}", it, quality[i] * 50 + it + rng.random()) for i in range(n_trials)
            for it in range(1, n_evals + 1)]


def _run(rungs: Rungs, events, start=0, stop_at=None):
    """Feed events as Tune would: a stopped trial gets no further results."""
    decisions = {}
    dead = set(rungs.stopped)
    for i, (tid, it, v) in enumerate(events):
        if i < start or tid in dead:
            continue
        if stop_at is not None and i >= stop_at:
            break
        d = rungs.decide(tid, it, v)
        decisions[(tid, it)] = d
        if d == STOP:
            dead.add(tid)
    return decisions


def test_milestones():
    r = Rungs(grace_period=1, reduction_factor=3)
    assert r.milestones(30) == [1, 3, 9, 27]
    assert Rungs(grace_period=2, reduction_factor=2, max_t=16).milestones(100) == [2, 4, 8]
    assert Rungs(grace_period=1, reduction_factor=1.5).milestones(5) == [1, 2, 3, 4]  # ceil(1.5^k)


def test_matches_rays_async_hyperband_bracket():
    from ray.tune.schedulers.async_hyperband import _Bracket

    class T:
        def __init__(self, tid):
            self.trial_id = tid

    events = _events(n_trials=12, n_evals=8, seed=3)
    ours = Rungs(grace_period=1, reduction_factor=2, max_t=8)
    ray_bracket = _Bracket(min_t=1, max_t=8, reduction_factor=2, s=0)
    trials = {}
    dead_ours, dead_ray = set(), set()
    n_stops = 0
    for tid, it, v in events:
        if it >= 8:
            continue  # at max_t both stop the trial (not an ASHA rung decision)
        assert (tid in dead_ours) == (tid in dead_ray)
        if tid in dead_ours:
            continue
        a = ours.decide(tid, it, v)
        b = ray_bracket.on_result(trials.setdefault(tid, T(tid)), it, v)
        assert a == b, (tid, it)
        if a == STOP:
            dead_ours.add(tid)
            dead_ray.add(tid)
            n_stops += 1
    assert n_stops >= 3  # the sequence exercises stopping, not only continuing


def test_first_arrival_continues_and_worse_stops():
    r = Rungs(grace_period=1, reduction_factor=2)
    assert r.decide("a", 1, 10.0) == CONTINUE
    assert r.decide("b", 1, 5.0) == STOP  # below the median of [10]
    assert r.decide("c", 1, 20.0) == CONTINUE
    assert r.was_stopped("b") and not r.was_stopped("a")
    assert r.decide("a", 2, 1.0) == CONTINUE  # rung 2: first arrival
    assert r.decide("c", 2, 0.5) == STOP
    # between milestones: no decision
    assert r.decide("a", 3, 0.0) == CONTINUE


def test_mode_min_and_nan_is_worst():
    r = Rungs(grace_period=1, reduction_factor=2, mode="min")
    assert r.decide("a", 1, 0.5) == CONTINUE
    assert r.decide("b", 1, 0.9) == STOP  # a higher loss is worse
    assert r.decide("c", 1, 0.1) == CONTINUE
    r2 = Rungs(grace_period=1, reduction_factor=2)
    assert r2.decide("a", 1, 1.0) == CONTINUE
    assert r2.decide("b", 1, float("nan")) == STOP
    assert r2.records["1"][1][1] is None  # stored as null, never NaN in JSON


def test_max_t_ends_without_early_stop():
    r = Rungs(grace_period=1, reduction_factor=3, max_t=4)
    assert r.decide("a", 4, 1.0) == STOP
    assert not r.was_stopped("a")


def test_every_decision_is_on_disk_before_it_is_returned_and_reloaded(tmp_path):
    path = tmp_path / "asha_state.json"
    r = Rungs(grace_period=1, reduction_factor=2, path=path)
    r.decide("a", 1, 3.0)
    r.decide("b", 1, 1.0)  # a decision file beside the state (see test_sweep_scale)
    again = Rungs(grace_period=1, reduction_factor=2, path=path)
    assert again.records == r.records and again.stopped == r.stopped
    r.compact()  # the end of a sweep: all in asha_state.json
    saved = json.loads(path.read_text())
    assert saved["records"]["1"] == [["a", 3.0, CONTINUE], ["b", 1.0, STOP]]
    assert saved["stopped"] == {"b": 1}
    with pytest.raises(ValueError, match="differ"):
        Rungs(grace_period=2, reduction_factor=2, path=path)


def test_replayed_evaluation_gets_the_recorded_decision(tmp_path):
    r = Rungs(grace_period=1, reduction_factor=2, path=tmp_path / "s.json")
    assert r.decide("a", 1, 10.0) == CONTINUE
    assert r.decide("b", 1, 12.0) == CONTINUE
    # b resumes from an older checkpoint and reaches rung 1 again with another value
    assert r.decide("b", 1, 0.0) == CONTINUE
    assert [x[0] for x in r.records["1"]] == ["a", "b"]
    assert r.decide("c", 1, 1.0) == STOP
    assert r.decide("c", 1, 99.0) == STOP  # a stopped trial stays stopped


@pytest.mark.parametrize("crash_at,replay_back", [(5, 0), (23, 2), (40, 4), (61, 7)])
def test_crash_and_resume_decides_as_an_uninterrupted_run(tmp_path, crash_at, replay_back):
    events = _events(n_trials=9, n_evals=9, seed=1)
    full = Rungs(grace_period=1, reduction_factor=3, max_t=0)
    expected = _run(full, events)
    assert any(d == STOP for d in expected.values())

    path = tmp_path / "asha_state.json"
    first = Rungs(grace_period=1, reduction_factor=3, path=path)
    got = _run(first, events, stop_at=crash_at)
    # the driver dies; the new one reloads the file, and the running trial continues from a
    # checkpoint up to `replay_back` evaluations older than its last report
    second = Rungs(grace_period=1, reduction_factor=3, path=path)
    tid, it, _ = events[crash_at - 1]
    restart = max(crash_at - 1 - min(replay_back, it - 1), 0)
    got.update(_run(second, events, start=restart))
    assert second.stopped == full.stopped
    assert {k: v for k, v in got.items()} == expected
    assert second.records == full.records


def test_tune_scheduler_uses_relex_trial_ids_and_survives_pickling(tmp_path):
    import ray.cloudpickle as cloudpickle
    from ray.tune.schedulers import TrialScheduler

    asha = {"metric": "micro_f1", "mode": "max", "grace_period": 1, "reduction_factor": 2, "max_t": 0}
    sched = make_scheduler(asha, tmp_path / "asha_state.json")

    class FakeTrial:
        def __init__(self, tid, ray_id):
            self.trial_id = ray_id
            self.config = {"trial": {"trial_id": tid, "config": {}}}

    a, b = FakeTrial("t000", "abc_00000"), FakeTrial("t001", "abc_00001")
    res = {"training_iteration": 1}
    assert sched.on_trial_result(None, a, {**res, "micro_f1": 50.0}) == TrialScheduler.CONTINUE
    assert sched.on_trial_result(None, b, {**res, "micro_f1": 10.0}) == TrialScheduler.STOP
    assert sched.rungs.was_stopped("t001")
    # what Tune pickles into tuner.pkl resolves, on restore, to the scheduler registered by the
    # runner — whose rungs were reloaded from asha_state.json
    blob = cloudpickle.dumps(sched)
    fresh = make_scheduler(asha, tmp_path / "asha_state.json")
    restored = cloudpickle.loads(blob)
    assert restored is fresh and restored.rungs.was_stopped("t001")
    assert math.isclose(restored.rungs.records["1"][0][1], 50.0)


def test_rungs_count_the_trials_own_evaluations_across_a_resume(tmp_path):
    """A resumed sweep is a new Tune run: a trial continuing from its third evaluation reports
    training_iteration 1 again. ASHA places it by the evaluation count relex's trials report."""
    from ray.tune.schedulers import TrialScheduler

    from relex.sweep.trial import evaluation_of

    assert evaluation_of({"training_iteration": 1, "evaluation": 3}) == 3
    assert evaluation_of({"training_iteration": 2}) == 2  # another trainable: Tune's count
    asha = {"metric": "micro_f1", "mode": "max", "grace_period": 3, "reduction_factor": 2, "max_t": 0}
    sched = make_scheduler(asha, tmp_path / "asha_state.json")

    class FakeTrial:
        def __init__(self, tid):
            self.trial_id, self.config = tid, {"trial": tid}

    a, b = FakeTrial("t000"), FakeTrial("t001")
    assert sched.on_trial_result(None, a, {"training_iteration": 3, "evaluation": 3,
                                           "micro_f1": 50.0}) == TrialScheduler.CONTINUE
    # t001 resumed after its second evaluation: Tune's first result of it is its third
    assert sched.on_trial_result(None, b, {"training_iteration": 1, "evaluation": 3,
                                           "micro_f1": 10.0}) == TrialScheduler.STOP
    assert sched.rungs.was_stopped("t001") and [r[0] for r in sched.rungs.records["3"]] == ["t000", "t001"]
