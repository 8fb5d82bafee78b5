"""Sampled axes in job files: bounds, types and q of the draws, seeded reproducibility, the grid
crossed with the samples, and one clear line (exit 2, before Ray) for each bad distribution."""

from __future__ import annotations

import json
import math

import pytest

from relex.cli import main
from relex.data.sample import SAMPLE_PATH
from relex.errors import RelexError
from relex.sweep.job import load_job

HEAD = "from relex.sweep import Sweep, grid, uniform, loguniform, randint, choice\n"


def _job(tmp_path, body, name="job.py"):
    p = tmp_path / name
    p.write_text(HEAD + body, encoding="utf-8")
    return p


def _sampled(tmp_path, space, extra="", name="job.py"):
    return load_job(_job(tmp_path, f"sweep = Sweep(name='s', train={str(SAMPLE_PATH)!r},\n"
                                   f"  space=dict({space}){extra})\n", name))


def test_draws_respect_bounds_types_and_q(tmp_path):
    job = _sampled(tmp_path, "lr=loguniform(1e-5, 1e-3), warmup_ratio=uniform(0.0, 0.3, q=0.05), "
                             "epochs=randint(2, 5), loss=choice(['ce', 'focal'])",
                   ", num_samples=60, search_seed=4")
    cfgs = [t.config for t in job.trials]
    assert len(cfgs) == 60 and [t.trial_id for t in job.trials] == [f"t{i:03d}" for i in range(60)]
    assert all(isinstance(c.lr, float) and 1e-5 <= c.lr <= 1e-3 for c in cfgs)
    # log-uniform: about half the draws below the geometric midpoint 1e-4, not ~9 %
    assert 15 <= sum(c.lr < 1e-4 for c in cfgs) <= 45
    assert all(0.0 <= c.warmup_ratio <= 0.3 and c.warmup_ratio == round(round(c.warmup_ratio / 0.05) * 0.05, 12)
               for c in cfgs)
    assert len({c.warmup_ratio for c in cfgs}) >= 5  # q=0.05 gives 0, 0.05, ..., 0.3
    assert all(type(c.epochs) is int and 2 <= c.epochs <= 4 for c in cfgs)  # high excluded
    assert {c.epochs for c in cfgs} == {2, 3, 4}
    assert {c.loss for c in cfgs} == {"ce", "focal"}
    assert job.axes == ["lr", "warmup_ratio", "epochs", "loss"]
    assert job.trials[3].varying == {"lr": cfgs[3].lr, "warmup_ratio": cfgs[3].warmup_ratio,
                                     "epochs": cfgs[3].epochs, "loss": cfgs[3].loss}


def test_a_seeded_random_search_is_reproducible(tmp_path):
    space = "lr=loguniform(1e-5, 1e-3), weight_decay=uniform(0.0, 0.1)"
    a = _sampled(tmp_path, space, ", num_samples=8, search_seed=11", "a.py")
    b = _sampled(tmp_path, space, ", num_samples=8, search_seed=11", "b.py")
    c = _sampled(tmp_path, space, ", num_samples=8, search_seed=12", "c.py")
    assert [t.config for t in a.trials] == [t.config for t in b.trials]
    assert [t.config.lr for t in a.trials] != [t.config.lr for t in c.trials]
    assert len({t.config.lr for t in a.trials}) == 8
    # job.json records the searched space and how it was searched
    recorded = json.loads(json.dumps(a.resolved()))
    assert recorded["search"] == {"method": "random", "num_samples": 8, "seed": 11, "seeds": [42],
                                  "space": {"lr": {"kind": "loguniform", "low": 1e-5, "high": 1e-3},
                                            "weight_decay": {"kind": "uniform", "low": 0.0, "high": 0.1}}}
    assert [t["config"]["lr"] for t in recorded["trials"]] == [t.config.lr for t in a.trials]


def test_grid_is_crossed_with_the_samples_and_each_sample_runs_every_seed(tmp_path):
    job = _sampled(tmp_path, "head=grid(['cls', 'marker']), lr=loguniform(1e-5, 1e-3), fgm=0.5",
                   ", num_samples=3, seeds=[1, 2]")
    assert len(job.trials) == 2 * 3 * 2
    heads = [t.config.head for t in job.trials]
    assert heads == ["cls"] * 6 + ["marker"] * 6
    pairs = [job.trials[i:i + 2] for i in range(0, 12, 2)]
    for a, b in pairs:  # one sampled configuration under both seeds
        assert (a.config.seed, b.config.seed) == (1, 2) and a.config.lr == b.config.lr
    assert len({p[0].config.lr for p in pairs}) == 6  # every grid point draws its own samples
    assert all(t.config.fgm == 0.5 for t in job.trials)
    assert job.axes == ["head", "lr", "seed"]


def test_a_grid_sweep_records_no_search_and_keeps_its_ids(tmp_path):
    job = load_job(_job(tmp_path, f"sweep = Sweep(name='g', train={str(SAMPLE_PATH)!r},\n"
                                  "  space=dict(head=grid(['cls', 'marker'])))\n"))
    assert [t.trial_id for t in job.trials] == ["t000", "t001"]
    assert "search" not in job.resolved() and job.total == 2 and not job.searched


@pytest.mark.parametrize("space, extra, expected", [
    ("lr=loguniform(0, 1e-3)", "", "loguniform(0, 0.001): bounds must be > 0"),
    ("lr=uniform(-1e-3, 1e-3)", "", "lr=uniform(-0.001, 0.001): bound: lr=-0.001 is invalid: must be in (0, 1)"),
    ("head_dropout=uniform(0.1, 1.5)", "", "head_dropout=1.5 is invalid: must be in [0, 1)"),
    ("loss=uniform(0.0, 1.0)", "", "space: loss=uniform(0.0, 1.0): loss is a str field; use choice([...])"),
    ("epochs=uniform(1.0, 4.0)", "", "epochs is an int field; use randint()"),
    ("fgm=randint(0, 3)", "", "fgm is a float field; use uniform() or loguniform()"),
    ("lrr=loguniform(1e-5, 1e-3)", "", "unknown config key 'lrr' (did you mean 'lr'?)"),
    ("backbone=choice(['relex/tiny', 'klue/bert-base'])", "", "backbone shapes the features"),
    ("loss=choice(['ce', 'hinge'])", "", "loss='hinge' is invalid: choose one of"),
    ("lr=uniform(1e-3, 1e-5)", "", "uniform(0.001, 1e-05): low must be below high"),
    ("warmup_ratio=uniform(0.0, 0.3, q=0.07)", "", "q=0.07 must be > 0 with both bounds multiples of it"),
    ("epochs=randint(3, 3)", "", "randint(3, 3): low must be below high"),
    ("loss=choice([])", "", "choice() takes a non-empty list"),
    ("head=grid(['cls'])", ", num_samples=4", "num_samples=4 needs a sampled axis in space"),
    ("lr=loguniform(1e-5, 1e-3)", ", search='bayes'", "search='bayes' is invalid: choose one of random, tpe"),
    ("lr=loguniform(1e-5, 1e-3)", ", num_samples=0", "num_samples=0 is invalid"),
])
def test_bad_distributions_are_one_line_exit_2_before_ray(tmp_path, capsys, space, extra, expected):
    p = _job(tmp_path, f"sweep = Sweep(name='s', train={str(SAMPLE_PATH)!r},\n"
                       f"  space=dict({space}){extra})\n")
    with pytest.raises(RelexError) as e:
        load_job(p)
    assert expected in str(e.value)
    assert main(["sweep", str(p), "--dry-run"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and expected in err and "Traceback" not in err
    assert str(p) in err


def test_tpe_without_optuna_names_the_extra(tmp_path, monkeypatch, capsys):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "optuna" else real(name, *a))
    p = _job(tmp_path, f"sweep = Sweep(name='s', train={str(SAMPLE_PATH)!r}, search='tpe',\n"
                       "  space=dict(lr=loguniform(1e-5, 1e-3)), num_samples=4)\n")
    assert main(["sweep", str(p), "--dry-run"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith("search='tpe' needs Optuna: pip install 'relex[search]'")
    assert len(err.splitlines()) == 1


def test_tpe_job_counts_its_trials_and_builds_features_for_each_grid_point(tmp_path):
    pytest.importorskip("optuna")
    job = _sampled(tmp_path, "max_length=grid([64, 96]), lr=loguniform(1e-5, 1e-3)",
                   ", search='tpe', num_samples=5, seeds=[1, 2]")
    assert job.searched and job.trials == [] and job.total == 2 * 5 * 2
    assert [c.max_length for c in job.feature_configs()] == [64, 96]
    assert all(math.isclose(c.lr, 1e-5) for c in job.feature_configs())


def test_dry_run_shows_the_space_the_count_and_a_few_samples(tmp_path, capsys):
    p = _job(tmp_path, f"sweep = Sweep(name='s', train={str(SAMPLE_PATH)!r}, num_samples=20,\n"
                       "  search_seed=5, space=dict(lr=loguniform(1e-5, 1e-3), epochs=2))\n")
    assert main(["sweep", str(p), "--dry-run"]) == 0
    out = capsys.readouterr().out
    job = load_job(p)
    assert "sweep s: 20 trials" in out
    assert "search: random (seed 5), 20 sampled configuration(s) x 1 seed(s); lr=loguniform(1e-05, 0.001)" in out
    assert "the first 12 of 20 trials:" in out
    table = out.split("the first 12 of 20 trials:\n")[1].splitlines()
    assert table[0].split() == ["trial", "lr"] and len(table) == 13
    for line, trial in zip(table[1:], job.trials):
        tid, lr = line.split()
        assert tid == trial.trial_id and float(lr) == pytest.approx(trial.config.lr, rel=5e-3)


def test_tpe_dry_run_shows_its_first_suggestions(tmp_path, capsys):
    pytest.importorskip("optuna")
    from relex.sweep.search import first_suggestions

    p = _job(tmp_path, f"sweep = Sweep(name='s', train={str(SAMPLE_PATH)!r}, num_samples=8,\n"
                       "  search='tpe', seeds=[1, 2], space=dict(lr=loguniform(1e-5, 1e-3),\n"
                       "  warmup_ratio=uniform(0.0, 0.2, q=0.1)))\n")
    assert main(["sweep", str(p), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "sweep s: 16 trials" in out and "search: tpe (seed 0)" in out
    table = out.split("later ones follow the results):\n")[1].splitlines()
    assert table[0].split() == ["suggestion", "lr", "warmup_ratio"]
    expected = first_suggestions(load_job(p), 3)
    for line, params, sid in zip(table[1:], expected, ["s000", "s001", "s002"]):
        got = line.split()
        assert got[0] == sid and float(got[1]) == pytest.approx(params["lr"], rel=5e-3)
        assert float(got[2]) == params["warmup_ratio"] and params["warmup_ratio"] in (0.0, 0.1, 0.2)
        assert 1e-5 <= params["lr"] <= 1e-3


def _base_sweep(tmp_path, scores):
    """A finished grid sweep over lr (no Ray): job.json and trials.parquet as the runner writes them."""
    from relex.sweep.results import TRIALS_SCHEMA, to_table, write_table
    from relex.sweep.layout import JOB_FILE

    lrs = list(scores)
    base = load_job(_job(tmp_path, f"sweep = Sweep(name='stage1', train={str(SAMPLE_PATH)!r}, valid=0.25,\n"
                                   f"  space=dict(lr=grid({lrs!r}), head='cls'))\n", "stage1.py"))
    bdir = tmp_path / "art" / "stage1"
    bdir.mkdir(parents=True)
    (bdir / JOB_FILE).write_text(json.dumps(base.resolved()))
    rows = [{"trial_id": t.trial_id, "status": "TERMINATED", **t.config.to_dict(),
             "micro_f1": scores[t.config.lr]} for t in base.trials]
    write_table(bdir / "trials.parquet", to_table(rows, TRIALS_SCHEMA))
    return bdir


def test_narrow_draws_around_the_base_sweeps_best(tmp_path):
    bdir = _base_sweep(tmp_path, {1e-5: 40.0, 1e-4: 60.0, 1e-3: 50.0})
    job = load_job(_job(tmp_path, f"from relex.sweep import narrow\n"
                                  f"sweep = Sweep(name='stage2', base={str(bdir)!r}, top=1, num_samples=30,\n"
                                  "  space=dict(lr=narrow(loguniform(1e-6, 1e-2), 0.25),\n"
                                  "             warmup_ratio=narrow(uniform(0.0, 0.4, q=0.05), 0.25)))\n"))
    lrs = [t.config.lr for t in job.trials]
    assert len(lrs) == 30 and {t.lineage for t in job.trials} == {"stage1/t001"}
    # a quarter of four decades around 1e-4: half a decade each side
    assert all(10 ** -4.5 * 0.999 <= lr <= 10 ** -3.5 * 1.001 for lr in lrs)
    assert min(lrs) < 6e-5 and max(lrs) > 1.6e-4  # the narrowed range is used, not a point
    # warm-up: a quarter of [0, 0.4] around the base's 0.1 (the default), on the q grid
    assert {t.config.warmup_ratio for t in job.trials} <= {0.05, 0.1, 0.15}
    assert all(t.config.head == "cls" for t in job.trials)  # the base configuration's settings
    assert job.resolved()["search"]["space"]["lr"] == {"kind": "loguniform", "low": 1e-6,
                                                       "high": 1e-2, "narrow": 0.25}


def test_a_staged_tpe_study_starts_from_the_base_trials_in_range(tmp_path):
    pytest.importorskip("optuna")
    from relex.sweep.search import _searcher_class

    bdir = _base_sweep(tmp_path, {1e-5: 40.0, 1e-4: 60.0, 1e-3: 50.0, 3e-2: 10.0})
    job = load_job(_job(tmp_path, f"from relex.sweep import narrow\n"
                                  f"sweep = Sweep(name='stage2', base={str(bdir)!r}, top=1, num_samples=4,\n"
                                  "  search='tpe', space=dict(lr=narrow(loguniform(1e-6, 1e-1), 0.5)))\n"))
    sweep_dir = tmp_path / "art" / "stage2"
    sweep_dir.mkdir(parents=True)
    searcher = _searcher_class()(job, sweep_dir, {})
    study = searcher.studies[0]
    given = study.get_trials(deepcopy=False)
    # half of five decades around 1e-4: 1e-5.25 .. 1e-2.75 holds 1e-5, 1e-4 and 1e-3, not 3e-2
    assert sorted((t.params["lr"], t.value, t.user_attrs["from"]) for t in given) == [
        (1e-5, 40.0, "stage1/t000"), (1e-4, 60.0, "stage1/t001"), (1e-3, 50.0, "stage1/t002")]
    specs = []
    while (s := searcher.suggest(f"ray-{len(specs)}")) != searcher.FINISHED:
        specs.append(s["trial"])
    assert [s["trial_id"] for s in specs] == ["s000", "s001", "s002", "s003"]  # num_samples new ones
    assert all(10 ** -5.25 <= s["config"]["lr"] <= 10 ** -2.75 for s in specs)
    assert all(s["config"]["head"] == "cls" for s in specs)
    assert len(study.get_trials(deepcopy=False)) == 3 + 4


def test_a_hand_over_cut_short_by_a_kill_is_completed_once(tmp_path):
    pytest.importorskip("optuna")
    from relex.sweep.search import _searcher_class

    bdir = _base_sweep(tmp_path, {1e-5: 40.0, 1e-4: 60.0, 1e-3: 50.0})
    job = load_job(_job(tmp_path, f"from relex.sweep import narrow\n"
                                  f"sweep = Sweep(name='stage2', base={str(bdir)!r}, top=1, num_samples=2,\n"
                                  "  search='tpe', space=dict(lr=narrow(loguniform(1e-6, 1e-1), 0.5)))\n"))
    sweep_dir = tmp_path / "art" / "stage2"
    sweep_dir.mkdir(parents=True)
    _searcher_class()(job, sweep_dir, {})
    journal = sweep_dir / "study.journal"
    lines = journal.read_bytes().splitlines(keepends=True)
    assert len(lines) == 1 + 3  # the study, then the three base trials in one append
    journal.write_bytes(b"".join(lines[:2]) + lines[2][:20])  # killed inside the second one
    searcher = _searcher_class()(job, sweep_dir, {})
    given = searcher.studies[0].get_trials(deepcopy=False)
    assert sorted(t.user_attrs["from"] for t in given) == ["stage1/t000", "stage1/t001", "stage1/t002"]
    assert searcher.given == [3] and searcher.suggest("ray-0")["trial"]["trial_id"] == "s000"


def test_narrow_needs_a_base(tmp_path):
    p = _job(tmp_path, f"from relex.sweep import narrow\n"
                       f"sweep = Sweep(name='s', train={str(SAMPLE_PATH)!r},\n"
                       "  space=dict(lr=narrow(loguniform(1e-6, 1e-2), 0.25)))\n")
    with pytest.raises(RelexError, match=r"lr=narrow\(...\) narrows around a base sweep's configurations; set base="):
        load_job(p)


def test_the_bundled_search_job_plans_a_tpe_search(capsys):
    pytest.importorskip("optuna")
    from pathlib import Path

    job = load_job(Path(__file__).resolve().parents[1] / "jobs" / "search.py")
    assert job.searched and job.total == 12 and job.sampled == ["lr", "warmup_ratio", "weight_decay"]
    assert main(["sweep", str(job.path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "sweep search: 12 trials" in out and "TPE's first 3 suggestions" in out


def test_leaderboard_writes_sampled_values_readably():
    from relex.config import TrialConfig
    from relex.analysis.leaderboard import plain_text

    rows = [{"trial_id": f"s00{i}", "status": "TERMINATED", "micro_f1": 50.0 + i,
             **TrialConfig(lr=lr, warmup_ratio=w).to_dict()}
            for i, (lr, w) in enumerate([(0.000651021436, 0.23841923), (3e-05, 0.1), (0.0015, 0.15000000000000002)])]
    text = plain_text(rows)
    assert "6.51e-04" in text and "0.238" in text  # sampled: three significant digits
    assert "3e-05" in text and "0.0015" in text and "0.15 " in text  # as a job file writes them
    assert "0.000651" not in text and "0.23841923" not in text
