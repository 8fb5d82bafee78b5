"""relex: Korean relation extraction experiments, from one trainer to cluster-scale sweeps.

``relex.load(path)`` loads a trained model for predictions in Python (see :mod:`relex.api`);
it imports torch only when called.
"""

__version__ = "0.1.0"


def load(path, *, device=None, amp=None):
    """A trained model (checkpoint, ``relex train --out`` directory or ensemble) with
    ``predict(records)``, in float32 unless ``amp`` is given; see :func:`relex.api.load`."""
    from relex.api import load as _load

    return _load(path, device=device, amp=amp)


__all__ = ["load", "__version__"]
