"""`relex report` on a sweep with sampled axes: score against value (log scale for loguniform,
ASHA-stopped trials apart), fANOVA parameter importance, the best-so-far curve; the sampled
axes leave the per-value effects; the HTML page renders in headless Chromium."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
from synthetic_sweep import make_sweep

from relex.cli import main

pytest.importorskip("optuna")
pytest.importorskip("matplotlib")

LRS = [1e-5, 2.5e-5, 6e-5, 1.5e-4, 4e-4, 1e-3]
SPACE = {"lr": {"kind": "loguniform", "low": 1e-5, "high": 1e-3},
         "warmup_ratio": {"kind": "uniform", "low": 0.0, "high": 0.3, "q": 0.1},
         "loss": {"kind": "choice", "values": ["ce", "focal"]}}


@pytest.fixture(scope="module")
def sampled(tmp_path_factory):
    """micro-F1 peaks at lr=1.5e-4 (a parabola in log lr); warm-up changes nothing; the trials of
    the smallest lr were stopped early by ASHA."""
    return make_sweep(tmp_path_factory.mktemp("sampled"),
                      axes={"lr": LRS, "warmup_ratio": [0.0, 0.1, 0.2, 0.3], "loss": ["ce", "focal"]},
                      seeds=[1], effect=lambda c: -6.0 * (math.log10(c["lr"]) + 3.8) ** 2,
                      stop=lambda c, s: 3 if c["lr"] == 1e-5 else None, noise=0.2,
                      job_fields={"search": {"method": "tpe", "num_samples": 48, "seed": 0,
                                             "seeds": [1], "space": SPACE}})


def _table(md: str, caption: str) -> list[list[str]]:
    lines = md.split(f"**{caption}**", 1)[1].strip().splitlines()
    table = lines[:next((i for i, ln in enumerate(lines) if not ln.startswith("|")), len(lines))]
    return [[c.strip() for c in ln.strip("|").split("|")] for ln in table[2:]]


def test_sampled_axes_section_ranks_importance_and_tracks_the_best(sampled, capsys):
    assert main(["report", str(sampled), "--format", "markdown"]) == 0
    md = capsys.readouterr().out
    assert "## Sampled axes" in md
    axes = {r[0]: r for r in _table(md, "Sampled axes")}
    assert set(axes) == {"lr", "warmup_ratio", "loss"}
    assert axes["lr"][1] == "loguniform(1e-05, 0.001)" and axes["lr"][2] == "1e-05 – 0.001"
    assert axes["warmup_ratio"][1] == "uniform(0, 0.3, q=0.1)" and axes["loss"][2] == "ce, focal"
    assert axes["lr"][3] == "0.00015"  # the best trial's lr
    shares = {k: float(r[4]) for k, r in axes.items()}
    assert shares["lr"] > 0.8 and shares["lr"] > 10 * max(shares["warmup_ratio"], shares["loss"])
    assert abs(sum(shares.values()) - 1.0) < 0.02
    # best so far: non-decreasing, ending at the sweep's best micro-F1
    curve = _table(md, "Best so far (each improvement)")
    best = [float(r[3]) for r in curve]
    assert best == sorted(best) and len(best) >= 2
    import pandas as pd

    trials = pd.read_parquet(sampled / "trials.parquet")
    assert best[-1] == pytest.approx(trials["micro_f1"].max(), abs=0.006)
    # the sampled numeric axes are not compared value by value; the choice axis still is
    effects = md.split("## Effects of each axis", 1)[1].split("\n## ", 1)[0]
    assert "| loss |" in effects and "| lr |" not in effects and "| warmup_ratio |" not in effects


def test_sampled_axes_html_renders_in_chromium(sampled, tmp_path, capsys):
    from test_report_html import CHROMIUM, _assert_images, _assert_self_contained, _render_check

    if not Path(CHROMIUM).exists():
        pytest.skip("chromium not installed (.ci/run installs it)")
    page = tmp_path / "report.html"
    assert main(["report", str(sampled), "--html", str(page)]) == 0
    capsys.readouterr()
    text = page.read_text(encoding="utf-8")
    _assert_self_contained(text)
    alts = re.findall(r'<img [^>]*alt="([^"]*)"', text)
    for alt in ("micro-F1 against lr", "micro-F1 against warmup_ratio",
                "best micro-F1 so far against trial-seconds"):
        assert alt in alts
    assert "micro-F1 against loss" not in alts  # a choice axis has no scale to plot against
    assert "log scale" in text and "hollow: stopped early by ASHA" in text
    _assert_images(_render_check(page, tmp_path), len(alts))
