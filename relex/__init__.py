"""relex: Korean relation extraction experiments, from one trainer to cluster-scale sweeps.

``relex.load(path)`` loads a trained model for predictions in Python (see :mod:`relex.api`);
it imports torch only when called.

Where things go — each has one place, and what derives from it follows:

==========================  =================================================================
to add                      where
==========================  =================================================================
a metric                    one ``Metric`` entry in ``relex.metrics.REGISTRY`` plus its score
                            function; leaderboard columns, report titles, trackers, Parquet
                            columns, ASHA's choices and ensemble selection read the registry
a training technique        a config field in ``relex.config`` (flag, job key and leaderboard
                            column follow) and one module in ``relex/train/techniques/``
a config setting            a field of ``relex.config.TrialConfig`` (flag, job key, trials.parquet
                            column, checkpoint's config.json)
a report section            a ``*_section`` method of ``relex.analysis.report.ReportBuilder``,
                            listed in ``build``; its tables are ``relex.analysis.document`` blocks
a leaderboard column        ``relex.analysis.leaderboard.COLUMNS`` (a config field: ``column=True``)
a data format               a reader in ``relex.data.io.READERS`` and its suffix in ``EXTENSIONS``
a file in a sweep directory its name and path in ``relex.sweep.layout`` (``SweepDir``), read and
                            written through it; a Parquet column in ``relex.sweep.results``
a trial status              ``relex.sweep.results`` (``SCORED``, ``FINISHED``)
a command                   its arguments and entry point in the layer's ``commands`` module,
                            listed in ``relex.cli``; shared argparse types in ``relex.cli_args``
a layer or top-level module its rank in ``tests/test_layers.py`` (no upward import, no circle)
==========================  =================================================================
"""

__version__ = "0.1.0"


def load(path, *, device=None, amp=None):
    """A trained model (checkpoint, ``relex train --out`` directory or ensemble) with
    ``predict(records)``, in float32 unless ``amp`` is given; see :func:`relex.api.load`."""
    from relex.api import load as _load

    return _load(path, device=device, amp=amp)


__all__ = ["load", "__version__"]
