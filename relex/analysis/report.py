"""``relex report SWEEP_DIR``: what a sweep concluded.

Sections: the summary (and anything suspicious), configurations with seeds grouped, per-axis
effects with bootstrap intervals (and two-axis interactions on full-factorial grids), sampled axes
(score against value, parameter importance, best so far; :mod:`relex.analysis.continuous`), the best
configuration's errors, learning curves of the top trials with ASHA's rungs, metric honesty
(tie-free mean average precision beside KLUE's AUPRC, ties that move AUPRC) and cost. The same
document prints to the console (rich), as markdown (``--format markdown``) and, with ``--html
FILE``, as one self-contained HTML page with the plots.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from relex import metrics as M
from relex.analysis import configs as C
from relex.analysis import continuous
from relex.analysis import effects as E
from relex.analysis.defaults import TOP_CURVES
from relex.analysis.cost import Cost, sweep_cost
from relex.analysis.document import Document, Figure, Marked, Para, Section, Table
from relex.analysis.errors import ErrorAnalysis, analyse
from relex.analysis.formats import finite, fmt_time, fmt_value
from relex.analysis.formats import fmt_metric as f2
from relex.analysis.sweep_results import SweepResults, load_sweep
from relex.sweep.results import ERROR, STOPPED_EARLY

TOP_CONFIGS_PLOTTED = 25
TOP_CONFIGS_LISTED = 50  # rows of the configurations table; the leaderboard lists every one
TOP_INTERACTIONS = 5
TOP_EFFECTS_PLOTTED = 30  # rows of the effects plot; the table lists every effect
TOP_TYPE_PAIRS = 15
TOP_HONESTY = 100  # trials whose AUPRC is checked for ties, best first (each check costs a pass per class)


# ------------------------------------------------------------------------ formatting
def signed(v: float) -> str:
    return f"{v:+.2f}"


def interval_cell(iv: E.Interval | None) -> tuple[str, str]:
    if iv is None:
        return ("-", "muted")
    if iv.low is None:
        return (f"{signed(iv.estimate)} (1 pair)", "muted")
    text = f"{signed(iv.estimate)} [{iv.low:+.2f}, {iv.high:+.2f}]"
    if iv.contains_zero:
        return (text + " ≈0", "muted")
    return (text, "good" if iv.estimate > 0 else "bad")


def config_label(config: dict[str, Any], axes: list[str]) -> str:
    return ", ".join(f"{a}={fmt_value(config.get(a))}" for a in axes) or "(the only configuration)"


# --------------------------------------------------------------------------- report
class ReportBuilder:
    def __init__(self, res: SweepResults, *, budget: str = "equal", examples: int = 10,
                 curves: int = TOP_CURVES, plots: bool = False):
        self.res = res
        self.budget = budget
        self.examples = examples
        self.curves = curves
        self.plots = plots
        self.rows = res.trials.to_dict("records")
        self._fill_mean_ap()
        self.configs = C.by_config(self.rows)
        self.staged = any(C.lineage(r) for r in self.rows)  # trials grew from a base sweep's configurations
        self.comparer = E.Comparer(res, budget)
        # sampled numeric axes have a value per trial: their own section, not effects per value
        sampled = continuous.numeric_axes(res)
        self.grid = replace(res, axes=[a for a in res.axes if a not in sampled])
        self.effects = E.axis_effects(self.grid, self.comparer) if self.grid.axes else []

    def _fill_mean_ap(self) -> None:
        """Sweeps recorded before mean AP was a trial metric: compute it from the saved
        validation probabilities of each trial's best checkpoint."""
        gold = self.res.gold()
        if gold is None or (gold < 0).any():
            return
        for r in self.rows:
            if finite(r.get("mean_ap")) is None and finite(r.get(M.PRIMARY)) is not None:
                probs = self.res.probs(r["trial_id"])
                if probs is not None and len(probs) == len(gold):
                    r["mean_ap"] = M.mean_ap(gold, probs)

    def build(self) -> Document:
        res = self.res
        statuses = res.trials["status"].value_counts().to_dict()
        done = ", ".join(f"{n} {s.lower().replace('_', ' ')}" for s, n in sorted(statuses.items()))
        seeds = f"seeds {', '.join(map(str, res.seeds))}" if len(res.seeds) > 1 else f"seed {res.seeds[0]}" \
            if res.seeds else "no seeds"
        doc = Document(title=f"Sweep report: {res.dir.name}",
                       subtitle=f"{len(res.trials)} trials ({done}); {seeds}; {res.dir}")
        best = self.best_trial()
        doc.sections = [s for s in (
            self.summary(best), self.config_section(), self.effects_section(),
            continuous.section(self.res, M.REGISTRY[M.PRIMARY], self.plots),
            self.errors_section(best), self.curves_section(), self.honesty_section(),
            self.cost_section()) if s is not None]
        return doc

    # -------------------------------------------------------------- the best trial
    def best_trial(self) -> dict[str, Any] | None:
        """The best configuration (by mean micro-F1 over seeds) and its best seed's trial."""
        if not self.configs or not self.configs[0].n:
            return None
        top = self.configs[0]
        rows = [r for r in self.rows if r["trial_id"] in top.trial_ids]
        return max(rows, key=lambda r: (finite(r.get(M.PRIMARY)), r["trial_id"]))

    # ------------------------------------------------------------------- sections
    def summary(self, best) -> Section:
        res = self.res
        sec = Section("Summary", anchor="summary")
        axes = [f"{a} ∈ {{{', '.join(fmt_value(v) for v in vals)}}}"
                for a, vals in E.axis_values(res).items()]
        facts = [["axes", "; ".join(axes) or "none (one configuration)"],
                 ["trials", f"{len(res.trials)} ({len(res.scored)} with a score)"],
                 ["seeds", ", ".join(map(str, res.seeds)) or "-"]]
        if self.staged:
            facts.append(["staged from", self._base_text()])
        if best is not None:
            top = self.configs[0]
            sd = top.sd()
            facts.append(["best configuration", config_label(top.config, res.axes)
                          + (f" (grew from {', '.join(top.lineage)})" if top.lineage else "")])
            facts.append(["its micro-F1", f"{top.mean():.2f}" + (f" ± {sd:.2f} (sd over {top.n} seeds)"
                                                                  if sd is not None else " (1 seed)")])
            facts.append(["best trial", f"{best['trial_id']}: micro-F1 {f2(best.get('micro_f1'))}, "
                                        f"AUPRC {f2(best.get('auprc'))}, mean AP {f2(best.get('mean_ap'))}"])
        facts += self._findings()
        sec.add(Table(["", ""], facts, header=False))
        for g in C.identical_results(self.rows, res.sweep.probs_file):
            sec.add(Para(f"Suspicious: trials {', '.join(g.trial_ids)} have identical {g.what} "
                         "although their configurations or seeds differ; a setting may not have "
                         "been applied.", "warn"))
        errors = res.trials[res.trials["status"] == ERROR]
        if len(errors):
            sec.add(Para(f"{len(errors)} trial(s) failed: "
                         + "; ".join(f"{r.trial_id}: {r.error}" for r in errors.itertuples()), "warn"))
        return sec

    def _base_text(self) -> str:
        """"artifacts/stage1, its 2 best configurations: stage1/t003, stage1/t001"."""
        grown = list(dict.fromkeys(C.lineage(r) for r in self.rows if C.lineage(r)))
        base = self.res.job.get("base") or grown[0].rsplit("/", 1)[0]
        return f"{base}, its {len(grown)} best configuration{'s' if len(grown) > 1 else ''}: {', '.join(grown)}"

    def _findings(self) -> list[list]:
        """The effects in one line each: those whose interval excludes 0, and the rest."""
        clear, unclear = [], []
        for e in self.effects:
            s = e.stats.get(M.PRIMARY)
            if s is None:
                continue
            name = f"{e.axis}={fmt_value(e.value)} vs {fmt_value(e.reference)}"
            if s.low is not None and not s.contains_zero:
                clear.append((f"{name}: {signed(s.estimate)} micro-F1 [{s.low:+.2f}, {s.high:+.2f}]",
                              "good" if s.estimate > 0 else "bad"))
            else:
                unclear.append(name)
        out = [["clear effect", c] for c in clear]
        if unclear:
            out.append(["no clear effect", ("; ".join(unclear) + " (interval contains 0, or one pair)",
                                            "muted")])
        return out

    def config_name(self, g: C.ConfigSummary) -> str:
        """A configuration's label in plots: in a staged sweep prefixed by where it grew from, since
        this stage's axes alone may name two configurations alike."""
        label = config_label(g.config, self.res.axes)
        return f"{', '.join(g.lineage)}: {label}" if g.lineage else label

    def config_section(self) -> Section | None:
        scored = [g for g in self.configs if g.n]
        if not scored:
            return None
        axes = self.res.axes
        sec = Section("Configurations (seeds grouped)", anchor="configs")
        rows = []
        for i, g in enumerate(scored[:TOP_CONFIGS_LISTED], 1):
            ci = g.ci()
            style = {"top": "best", "within noise": "warn", "below": "muted"}.get(g.verdict)
            rows.append([str(i)] + ([", ".join(g.lineage) or "-"] if self.staged else [])
                        + [config_label(g.config, axes), str(g.n),
                         f"{g.mean():.2f}" + (f" ± {g.sd():.2f}" if g.sd() is not None else ""),
                         "-" if ci is None else f"[{ci[0]:.2f}, {ci[1]:.2f}]",
                         f2(g.mean("auprc")), f2(g.mean("mean_ap")), g.status_text(),
                         (g.verdict, style)])
        lineage = ["from"] if self.staged else []
        sec.add(Table(["rank", *lineage, "configuration", "n", "micro-F1 mean ± sd", "95% CI",
                       "AUPRC", "mean AP", "trials", "vs. top"], rows,
                      right={0} | {i + len(lineage) for i in (2, 3, 4, 5, 6)}))
        if len(scored) > TOP_CONFIGS_LISTED:
            in_noise = sum(g.verdict == "within noise" for g in scored[TOP_CONFIGS_LISTED:])
            sec.add(Para(f"The best {TOP_CONFIGS_LISTED} of {len(scored)} configurations; "
                         f"{in_noise} of the rest are within noise of the top one. "
                         "`relex leaderboard --by-config` lists them all.", "note"))
        if self.staged:
            sec.add(Para("from: the base sweep's configuration each one grew from (a staged sweep); "
                         "the configuration column shows only this stage's axes.", "note"))
        sec.add(Para("95% CI: t-interval of the mean over seeds. 'within noise': Welch's 95% "
                     "interval for the difference from the top configuration contains 0. "
                     "A configuration's trials stopped early by ASHA count with the score they "
                     "had when stopped.", "note"))
        if self.plots and len(scored) > 1:
            from relex.analysis import plots as P

            shown = scored[:TOP_CONFIGS_PLOTTED]
            colors = [{"top": P.GOOD, "within noise": "#e0a100"}.get(g.verdict, P.NEUTRAL) for g in shown]
            sec.add(Figure(P.config_means([self.config_name(g) for g in shown],
                                          [g.mean() for g in shown], [g.ci() for g in shown], colors),
                           "mean micro-F1 per configuration", "Mean micro-F1 per configuration; "
                           "the line is its 95% interval over seeds (none with one seed)."))
        return sec

    def effects_section(self) -> Section | None:
        res = self.grid
        if not res.axes:
            return None
        sec = Section("Effects of each axis", anchor="effects")
        effects = self.effects
        metrics = self.comparer.metrics
        sec.add(Para(f"Each value against the axis's reference (its first grid value), from "
                     f"matched pairs of trials that differ only in that axis (same seed, same "
                     f"other values), averaged over pairs; 95% bootstrap interval "
                     f"(scipy.stats.bootstrap, BCa, {E.RESAMPLES} resamples). Budget: "
                     f"{self.comparer.describe()}. ≈0: the interval contains 0."))
        rows = []
        for e in effects:
            head = e.stats.get(M.PRIMARY)
            verdict = head.verdict if head else "no pairs"
            style = {"better": "good", "worse": "bad"}.get(verdict, "muted")
            rows.append([e.axis, f"{fmt_value(e.value)} vs {fmt_value(e.reference)}", str(e.pairs)]
                        + [interval_cell(e.stats.get(m)) for m in metrics] + [(verdict, style)])
        sec.add(Table(["axis", "value vs reference", "pairs"]
                      + [f"Δ {M.REGISTRY[m].heading} [95% CI]" for m in metrics] + ["micro-F1 verdict"],
                      rows, right={2}))
        dropped = [(e, e.unmatched, e.not_comparable) for e in effects if e.unmatched or e.not_comparable]
        for e, unmatched, excluded in dropped:
            sec.add(Para(f"{e.axis}={fmt_value(e.value)}: " + ", ".join(
                x for x in (f"{unmatched} trial(s) without a scored partner" if unmatched else "",
                            f"{excluded} pair(s) excluded by the budget rule" if excluded else "") if x)
                + ".", "note"))
        if any(0 < e.pairs < E.FEW_PAIRS for e in effects):
            sec.add(Para(f"Fewer than {E.FEW_PAIRS} pairs: a bootstrap interval from so few pairs "
                         "is narrower than the truth; more seeds make it honest.", "note"))
        if self.plots and any(e.stats for e in effects):
            from relex.analysis import plots as P

            measured = [e for e in effects if e.stats]
            shown = self._largest_effects(measured, TOP_EFFECTS_PLOTTED)
            caption = ("Difference from the reference value with its 95% interval; grey: the "
                       "interval contains 0.")
            if len(shown) < len(measured):
                caption += (f" The {len(shown)} largest of {len(measured)} effects by "
                            f"{M.REGISTRY[M.PRIMARY].heading}; the table lists all.")
            forest = [(f"{e.axis}: {fmt_value(e.value)} vs {fmt_value(e.reference)}",
                       {m: (s.estimate, s.low, s.high) for m, s in e.stats.items()}) for e in shown]
            sec.add(Figure(P.effects(forest, {m: M.REGISTRY[m].heading for m in metrics[:2]}),
                           "effects with 95% intervals", caption))
        self._interactions(sec)
        return sec

    @staticmethod
    def _largest_effects(effects: list, limit: int) -> list:
        """At most ``limit`` effects, the largest by the primary metric, kept in grid order: a
        plot of a hundred values of one axis is not legible."""
        if len(effects) <= limit:
            return effects
        size = {id(e): abs(e.stats[M.PRIMARY].estimate) if M.PRIMARY in e.stats else 0.0
                for e in effects}
        keep = set(sorted(size, key=size.get, reverse=True)[:limit])
        return [e for e in effects if id(e) in keep]

    def _interactions(self, sec: Section) -> None:
        res = self.grid
        if len(res.axes) < 2:
            return
        if not E.is_full_factorial(res):
            sec.add(Para("Interactions: not shown, the grid is not full factorial.", "note"))
            return
        found = E.interactions(res, self.comparer)[:TOP_INTERACTIONS]
        if not found:
            return
        metrics = self.comparer.metrics
        rows = [[f"{x.axes[0]}={fmt_value(x.values[0])} × {x.axes[1]}={fmt_value(x.values[1])}",
                 str(max(s.n for s in x.stats.values()))]
                + [interval_cell(x.stats.get(m)) for m in metrics] for x in found]
        sec.add(Table(["interaction", "quadruples"] + [f"{M.REGISTRY[m].heading} [95% CI]" for m in metrics],
                      rows, caption=f"Two-axis interactions (largest {len(found)})", right={1}))
        sec.add(Para("Interaction: y(a,b) − y(a₀,b) − y(a,b₀) + y(a₀,b₀) against the references "
                     "a₀, b₀; positive when the two values together do better than their "
                     "separate effects add up to.", "note"))

    def errors_section(self, best) -> Section | None:
        sec = Section("Errors of the best configuration", anchor="errors")
        if best is None:
            return sec.add(Para("No trial has a score yet.", "note"))
        res = self.res
        probs, gold = res.probs(best["trial_id"]), res.gold()
        if probs is None or gold is None or res.labels is None:
            return sec.add(Para(f"{best['trial_id']}: no saved validation probabilities or "
                                "validation index; nothing to analyse.", "note"))
        if len(probs) != len(gold) or (gold < 0).any():
            return sec.add(Para(f"{best['trial_id']}: its probabilities do not match "
                                "valid_index.parquet; nothing to analyse.", "warn"))
        a = analyse(gold, probs, res.labels, res.negative, res.valid, examples=self.examples)
        self.best_analysis = a
        m = a.metrics
        grew_from = f", grew from {C.lineage(best)}" if C.lineage(best) else ""
        sec.add(Para(f"Trial {best['trial_id']} ({config_label(best, res.axes)}, seed "
                     f"{best.get('seed')}{grew_from}), its best checkpoint on {m['n']} validation rows: "
                     f"micro-F1 {m['micro_f1']:.2f}, AUPRC {m['auprc']:.2f}, mean AP "
                     f"{m['mean_ap']:.2f}, accuracy {m['accuracy']:.2f}."))
        if res.valid_note:
            sec.add(Para(res.valid_note, "note"))
        self._per_class(sec, a)
        self._confusions(sec, a)
        self._breakdowns(sec, a)
        self._examples(sec, a)
        return sec

    def _per_class(self, sec: Section, a: ErrorAnalysis) -> None:
        per = a.metrics["per_class"]
        order = sorted(per, key=lambda k: (-per[k]["support"], k))
        def f1_cell(k: str):  # a class the model mostly misses stands out
            text = f"{per[k]['f1']:.1f}"
            return (text, "bad") if per[k]["support"] and per[k]["f1"] < 50 else text

        rows = [[k + (" (negative)" if k == a.negative else ""), f"{per[k]['precision']:.1f}",
                 f"{per[k]['recall']:.1f}", f1_cell(k), str(per[k]["support"])] for k in order]
        sec.add(Table(["label", "precision", "recall", "F1", "support"], rows,
                      caption="Per class (by support)", right={1, 2, 3, 4}))
        if self.plots:
            from relex.analysis import plots as P

            shown = [k for k in order if per[k]["support"]]
            sec.add(Figure(P.per_class_f1(shown, [per[k]["f1"] for k in shown],
                                          [per[k]["support"] for k in shown]),
                           "F1 per class", "F1 per class with its number of gold rows."))

    def _confusions(self, sec: Section, a: ErrorAnalysis) -> None:
        if self.plots:
            from relex.analysis import plots as P

            present = [i for i in range(len(a.labels))
                       if a.confusion[i].sum() or a.confusion[:, i].sum()]
            sub = a.confusion[np.ix_(present, present)]
            sec.add(Figure(P.confusion(sub, [a.labels[i] for i in present]), "confusion matrix",
                           "Confusion matrix: rows are gold labels, colour the share of the row "
                           "(labels with no gold or predicted row left out)."))
        if a.top_confusions:
            sec.add(Table(["gold", "predicted", "rows", "% of gold"],
                          [[c.gold, c.predicted, str(c.count), f"{c.share:.1f}"] for c in a.top_confusions],
                          caption="Top confusions", right={2, 3}))

    def _breakdowns(self, sec: Section, a: ErrorAnalysis) -> None:
        for frame, what in ((a.by_type_pair, "subject→object type pair"), (a.by_source, "source")):
            if frame is None:
                continue
            shown = frame.head(TOP_TYPE_PAIRS)
            rows = [[str(r.group), str(r.rows), str(r.relations), f"{r.micro_f1:.2f}", f"{r.accuracy:.1f}"]
                    for r in shown.itertuples()]
            more = f" (largest {len(shown)} of {len(frame)})" if len(frame) > len(shown) else ""
            sec.add(Table([what, "rows", "gold relations", "micro-F1", "accuracy"], rows,
                          caption=f"By {what}{more}", right={1, 2, 3, 4}))

    def _examples(self, sec: Section, a: ErrorAnalysis) -> None:
        neg = a.negative
        for items, total, title in (
                (a.false_positives, a.n_false_positives,
                 f"A relation predicted where the gold label is {neg} (false positives)"),
                (a.false_negatives, a.n_false_negatives,
                 f"{neg} predicted where there is a relation (false negatives)")):
            if not total:
                sec.add(Para(f"{title}: none.", "note"))
                continue
            sec.add(Para(f"{title}: {total}, the {len(items)} most confident first "
                         "(S: subject, O: object)."))
            for ex in items:
                sec.add(Marked(f"{ex.id}: gold {ex.gold}, predicted {ex.predicted} "
                               f"(p={ex.confidence:.2f})", ex.segments))

    def curves_section(self) -> Section | None:
        res = self.res
        if res.history.empty or not self.curves:
            return None
        sec = Section("Learning curves", anchor="curves")
        top = [r for r in sorted(self.rows, key=lambda r: -(finite(r.get(M.PRIMARY)) or -1.0))
               if finite(r.get(M.PRIMARY)) is not None][:self.curves]
        rungs = ", ".join(map(str, res.rung_milestones)) or "none reached"
        sec.add(Para(f"Micro-F1 after each evaluation of the {len(top)} best trials; ASHA rungs "
                     f"at evaluations {rungs} (dotted)."))
        rows, curves = [], []
        for r in top:
            h = res.history[res.history["trial_id"] == r["trial_id"]].sort_values("iteration")
            if h.empty:
                continue
            stopped = r.get("status") == STOPPED_EARLY
            curves.append((f"{r['trial_id']} {config_label(r, res.axes)}", h["iteration"].to_numpy(),
                           h[M.PRIMARY].to_numpy(dtype=float), stopped))
            reached = [m for m in res.rung_milestones if m <= int(h["iteration"].max())]
            rows.append([r["trial_id"]] + ([C.lineage(r) or "-"] if self.staged else [])
                        + [config_label(r, res.axes), str(int(h["iteration"].max())),
                         str(reached[-1]) if reached else "-", f2(r.get(M.PRIMARY)),
                         ("stopped by ASHA", "muted") if stopped else str(r.get("status"))])
        lineage = ["from"] if self.staged else []
        sec.add(Table(["trial", *lineage, "configuration", "evaluations", "last rung", "best micro-F1",
                       "status"], rows, right={i + len(lineage) for i in (2, 3, 4)}))
        if self.plots and curves:
            from relex.analysis import plots as P

            sec.add(Figure(P.learning_curves(curves, res.rung_milestones), "learning curves",
                           "Dashed: stopped by ASHA."))
        return sec

    def honesty_section(self) -> Section:
        res = self.res
        sec = Section("Metric honesty: AUPRC and ties", anchor="honesty")
        sec.add(Para("KLUE's AUPRC joins precision-recall points with straight lines (a trapezoid); "
                     "a block of tied scores is one point, and the line across it is generous. "
                     "Mean AP (scikit-learn's average_precision_score, a step sum) is shown "
                     "beside it everywhere. A tie shift is KLUE's AUPRC minus the same area "
                     "with ties broken at random."))
        gold = res.gold()
        flagged, checked = [], 0
        ranked = sorted(self.rows, key=lambda r: -(finite(r.get(M.PRIMARY)) or -1.0))
        if gold is not None and not (gold < 0).any():
            for r in ranked:
                if checked == TOP_HONESTY:
                    break
                probs = res.probs(r["trial_id"])
                if probs is None or len(probs) != len(gold):
                    continue
                checked += 1
                if not M.has_ties(probs):
                    continue  # nothing for ties to move
                t = M.tie_effect(gold, probs, draws=3)
                if abs(t["shift"]) >= M.TIE_WARN_POINTS:
                    flagged.append([r["trial_id"], config_label(r, res.axes), f"{t['auprc']:.2f}",
                                    f"{t['auprc_tie_broken']:.2f}", (f"{t['shift']:+.2f}", "warn"),
                                    f2(r.get("mean_ap")), f"{100 * t['tied_share']:.1f}%"])
        if flagged:
            sec.add(Para(f"{len(flagged)} of {checked} trials have ties that move AUPRC by "
                         f"{M.TIE_WARN_POINTS} points or more; read their mean AP instead.", "warn"))
            sec.add(Table(["trial", "configuration", "AUPRC", "ties broken", "shift", "mean AP",
                           "tied scores"], flagged, right={2, 3, 4, 5, 6}))
        else:
            sec.add(Para(f"Ties move no trial's AUPRC by {M.TIE_WARN_POINTS} points or more "
                         f"({checked} trials with saved probabilities checked).", "note"))
        if checked == TOP_HONESTY and len(self.rows) > checked:
            sec.add(Para(f"The {checked} best trials with saved probabilities were checked, of "
                         f"{len(self.rows)}: ties matter where a trial is chosen.", "note"))
        return sec

    def cost_section(self) -> Section:
        c: Cost = sweep_cost(self.res)
        sec = Section("Cost", anchor="cost")
        gpu = c.total_gpu_s > 0
        rows = [[r.status, str(r.trials), fmt_time(r.trial_s)] + ([fmt_time(r.gpu_s)] if gpu else [])
                for r in c.by_status.itertuples()]
        rows.append([("total", "best"), str(len(self.res.trials)), fmt_time(c.total_s)]
                    + ([fmt_time(c.total_gpu_s)] if gpu else []))
        sec.add(Table(["status", "trials", "trial-seconds"] + (["GPU-seconds"] if gpu else []), rows,
                      right={1, 2, 3}))
        if c.stopped:
            sec.add(Para(f"ASHA stopped {c.stopped} trial(s) and saved about "
                         f"{fmt_time(c.saved_s)} of trial time"
                         + (f" ({fmt_time(c.saved_gpu_s)} GPU)" if gpu else "")
                         + f", {c.saved_share:.0f}% of what running every trial to the end would "
                         "have cost (estimate: each stopped trial scaled to the evaluations of a "
                         "finished trial with the same training budget)."))
        else:
            sec.add(Para("ASHA stopped no trial.", "note"))
        if self.plots:
            from relex.analysis import plots as P

            sec.add(Figure(P.cost(list(c.by_status["status"]), list(c.by_status["trial_s"]), c.saved_s),
                           "trial-seconds per status", "Trial-seconds per status."))
        return sec


def build_report(sweep_dir: str | Path, *, budget: str = "equal", examples: int = 10,
                 curves: int = TOP_CURVES, plots: bool = False) -> Document:
    res = load_sweep(sweep_dir)
    return ReportBuilder(res, budget=budget, examples=examples, curves=curves, plots=plots).build()
