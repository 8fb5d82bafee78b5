"""What a sweep concluded: effects with confidence intervals, seed noise, errors, cost, plots.

The top layer of relex, beside :mod:`relex.leaderboard`: it reads a finished (or running) sweep
directory (see :mod:`relex.sweep.results`) and may import the sweep, train and data layers;
nothing below imports it. ``relex report`` (:mod:`relex.analysis.report`) and
``relex data stats`` (:mod:`relex.analysis.data_report`) are its commands.

* :mod:`~relex.analysis.sweep_results` — one sweep directory loaded: trials, history, ASHA rungs,
  validation rows and probabilities;
* :mod:`~relex.analysis.effects` — per-axis effects from matched pairs at equal budget, two-axis
  interactions;
* :mod:`~relex.analysis.configs` — seeds grouped per configuration (``leaderboard --by-config``),
  suspicious identical results;
* :mod:`~relex.analysis.errors` — error analysis of one trial's validation probabilities;
* :mod:`~relex.analysis.cost` — trial-seconds per status and what ASHA saved;
* :mod:`~relex.analysis.document` — a report as sections of tables, figures and examples,
  rendered to the console (rich), markdown or one self-contained HTML file;
* :mod:`~relex.analysis.plots` — the matplotlib figures, as PNG bytes;
* :mod:`~relex.analysis.report`, :mod:`~relex.analysis.data_report` — the two documents;
  :mod:`~relex.analysis.commands` — their command-line entry points.
"""
