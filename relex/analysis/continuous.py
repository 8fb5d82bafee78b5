"""The report's section for sampled axes (``uniform``, ``loguniform``, ``randint``, ``choice``).

A grid axis has a few values and an effect per value with an interval (:mod:`relex.analysis.effects`);
a sampled axis has as many values as trials, so it is shown as it was searched:

* score against value for each numeric sampled axis (log scale for ``loguniform``), trials ASHA
  stopped marked apart — they were scored before the end of their budget;
* parameter importance from Optuna's fANOVA evaluator (``optuna.importance``, with the
  ``search`` extra) over the scored trials: the share of the score's variance each sampled axis
  explains;
* the best score so far against trial-seconds spent, trials in the order they ended: what the
  search bought with its compute.

What was sampled comes from ``job.json`` (``search``: method and space), written by
:meth:`relex.sweep.job.Sweep.resolved`.
"""

from __future__ import annotations

import importlib.util
from typing import Any

import pandas as pd

from relex.analysis.document import Figure, Para, Section, Table
from relex.analysis.formats import finite
from relex.analysis.sweep_results import SweepResults
from relex.metrics import Metric
from relex.sweep.results import STOPPED_EARLY
from relex.sweep.search import INSTALL_HINT
from relex.sweep.space import format_float

NUMERIC_KINDS = ("uniform", "loguniform", "randint")


def sampled_space(res: SweepResults) -> dict[str, dict[str, Any]]:
    """Sampled axes (job.json's ``search.space``) present in the trials, in the job's order."""
    space = (res.job.get("search") or {}).get("space") or {}
    return {k: v for k, v in space.items() if k in res.trials.columns}


def numeric_axes(res: SweepResults) -> list[str]:
    """The sampled axes with a range (a ``choice`` axis keeps the grid treatment)."""
    return [k for k, v in sampled_space(res).items() if v["kind"] in NUMERIC_KINDS]


def _distribution(spec: dict[str, Any]):
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    kind = spec["kind"]
    if kind == "choice":
        return CategoricalDistribution(spec["values"])
    if kind == "randint":
        return IntDistribution(spec["low"], spec["high"] - 1)
    return FloatDistribution(spec["low"], spec["high"], log=kind == "loguniform", step=spec.get("q"))


def importance(res: SweepResults, metric: str, mode: str) -> dict[str, float] | str:
    """{axis: share of the score's variance} by fANOVA, or why it cannot be computed."""
    space = sampled_space(res)
    scored = res.scored
    if importlib.util.find_spec("optuna") is None:
        return f"parameter importance needs Optuna: {INSTALL_HINT}"
    if len(scored) < 3:
        return f"parameter importance needs at least 3 scored trials ({len(scored)} here)"
    import optuna
    from optuna.importance import FanovaImportanceEvaluator

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    dists = {k: _distribution(v) for k, v in space.items()}
    study = optuna.create_study(direction="maximize" if mode == "max" else "minimize")
    for _, r in scored.iterrows():
        params = {k: _plain(r[k]) for k in space}
        study.add_trial(optuna.trial.create_trial(params=params, distributions=dists,
                                                  value=float(r[metric])))
    return dict(optuna.importance.get_param_importances(
        study, evaluator=FanovaImportanceEvaluator(seed=0), normalize=True))


def _plain(v: Any) -> Any:
    return v.item() if hasattr(v, "item") else v


def best_so_far(res: SweepResults, metric: str, mode: str) -> pd.DataFrame:
    """Scored trials in the order they ended: cumulative trial-seconds and the best score yet."""
    t = res.scored.copy()
    order = ["ended_at", "trial_id"] if "ended_at" in t and t["ended_at"].notna().all() else ["trial_id"]
    t = t.sort_values(order)
    t["seconds"] = t["wall_s"].fillna(0.0).cumsum()
    t["best"] = t[metric].cummax() if mode == "max" else t[metric].cummin()
    return t[["trial_id", "seconds", metric, "best"]].reset_index(drop=True)


def section(res: SweepResults, by: Metric, plots: bool) -> Section | None:
    """The section, scored by metric ``by`` (the report's primary one)."""
    space = sampled_space(res)
    if not space:
        return None
    metric, mode, title = by.name, by.mode, by.heading
    search = res.job.get("search") or {}
    sec = Section("Sampled axes", anchor="sampled")
    sec.add(Para(f"{search.get('method', 'random')} search, {search.get('num_samples', '?')} "
                 f"configurations per grid point; {len(res.scored)} scored trials. A sampled "
                 "axis has a value per trial, so it is shown as score against value, not as "
                 "effects per value."))
    shares = importance(res, metric, mode)
    sec.add(_axes_table(res, space, shares, metric, mode))
    if isinstance(shares, str):
        sec.add(Para(shares, "note"))
    curve = best_so_far(res, metric, mode)
    sec.add(_curve_table(curve, metric, title))
    if plots:
        from relex.analysis import plots as P

        for axis in numeric_axes(res):
            sec.add(_scatter(res, axis, space[axis], metric, title, P))
        if len(curve) > 1:
            sec.add(Figure(P.best_so_far(curve["seconds"].to_numpy(), curve["best"].to_numpy(),
                                         curve[metric].to_numpy(), title),
                           alt=f"best {title} so far against trial-seconds",
                           caption=f"Best {title} so far against the trial-seconds spent "
                                   f"({search.get('method', 'random')} search)."))
    return sec


def _axes_table(res, space, shares, metric: str, mode: str) -> Table:
    scored = res.scored
    best = scored.loc[scored[metric].idxmax() if mode == "max" else scored[metric].idxmin()] \
        if len(scored) else None
    rows = []
    for axis, spec in space.items():
        values = res.trials[axis].dropna()
        if spec["kind"] == "choice":
            sampled = ", ".join(_fmt(v) for v in sorted(set(values.tolist()), key=str))
            declared = f"choice of {len(spec['values'])}"
        else:
            sampled = f"{_fmt(values.min())} – {_fmt(values.max())}"
            step = f", q={_fmt(spec['q'])}" if spec.get("q") else ""
            declared = f"{spec['kind']}({_fmt(spec['low'])}, {_fmt(spec['high'])}{step})"
        share = "-" if isinstance(shares, str) else f"{shares.get(axis, 0.0):.2f}"
        rows.append([axis, declared, sampled, "-" if best is None else _fmt(best[axis]), share])
    return Table(["axis", "searched", "sampled", "best trial", "importance (fANOVA)"], rows,
                 caption="Sampled axes", right={4})


def _curve_table(curve: pd.DataFrame, metric: str, title: str) -> Table:
    """The points where the best score improved."""
    improved = curve[curve["best"].diff().fillna(1.0) != 0]
    rows = [[str(i + 1), r["trial_id"], f"{r['seconds']:.0f}", f"{r['best']:.2f}"]
            for i, r in improved.iterrows()]
    return Table(["after trials", "trial", "trial-seconds", f"best {title}"], rows,
                 caption="Best so far (each improvement)", right={0, 2, 3})


def _scatter(res, axis: str, spec, metric: str, title: str, P) -> Figure:
    scored = res.scored
    stopped = (scored["status"] == STOPPED_EARLY).to_numpy()
    return Figure(P.score_against_value(scored[axis].to_numpy(dtype=float),
                                        scored[metric].to_numpy(dtype=float), stopped,
                                        axis, title, log=spec["kind"] == "loguniform"),
                  alt=f"{title} against {axis}",
                  caption=f"{title} against {axis}"
                          + (" (log scale)" if spec["kind"] == "loguniform" else "")
                          + "; hollow: stopped early by ASHA.")


def _fmt(v: Any) -> str:
    v = _plain(v)
    if isinstance(v, float):
        f = finite(v)
        return "-" if f is None else format_float(f)
    return str(v)


__all__ = ["section", "importance", "best_so_far", "sampled_space", "numeric_axes"]
