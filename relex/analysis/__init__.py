"""What a sweep concluded: effects with confidence intervals, seed noise, errors, cost, plots;
ensembles of its trials and the decisions fitted on their validation probabilities.

The top layer of relex: it reads a finished (or running) sweep directory (through
:class:`relex.sweep.layout.SweepDir`) and may import the sweep, train and data layers; nothing
below imports it. ``relex report`` (:mod:`relex.analysis.report`), ``relex data stats``
(:mod:`relex.analysis.data_report`) and ``relex ensemble`` (:mod:`relex.analysis.ensemble_cli`)
are its commands; ``relex leaderboard`` (:mod:`relex.leaderboard`) draws its tables.

* :mod:`~relex.analysis.sweep_results` — one sweep directory loaded: trials, history, ASHA rungs,
  validation rows and probabilities;
* :mod:`~relex.analysis.effects` — per-axis effects from matched pairs at equal budget, two-axis
  interactions;
* :mod:`~relex.analysis.configs` — seeds grouped per configuration (``leaderboard --by-config``),
  folds grouped per configuration, suspicious identical results;
* :mod:`~relex.analysis.leaderboard` — the leaderboard's columns, ranking and tables (live,
  terminal, plain, markdown, CSV);
* :mod:`~relex.analysis.formats` — how a score, time or config value prints in a cell;
* :mod:`~relex.analysis.defaults` — the commands' choices, light to import;
* :mod:`~relex.analysis.errors` — error analysis of one trial's validation probabilities;
* :mod:`~relex.analysis.cost` — trial-seconds per status and what ASHA saved;
* :mod:`~relex.analysis.document` — a report as sections of tables, figures and examples,
  rendered to the console (rich), markdown or one self-contained HTML file;
* :mod:`~relex.analysis.plots` — the matplotlib figures, as PNG bytes;
* :mod:`~relex.analysis.report`, :mod:`~relex.analysis.data_report` — the two documents;
  :mod:`~relex.analysis.commands` — their command-line entry points;
* :mod:`~relex.analysis.selection` — ensemble members: top-K, greedy forward selection, cross-fitting;
* :mod:`~relex.analysis.decisions` — temperature, no_relation bias, entity-type-pair constraint,
  EM label shift, fitted on validation or out-of-fold probabilities;
* :mod:`~relex.analysis.ensemble` — the ensemble directory: members, weights, decisions, honest
  scores; :mod:`~relex.analysis.ensemble_cli` — ``relex ensemble``.
"""
