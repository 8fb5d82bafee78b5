"""Sweeps: job files (``Sweep``, ``grid`` and the sampled axes), the Ray Tune runner, results
and the live leaderboard.

Only the job-file API is imported here, so job files load without Ray.
"""

from relex.sweep.job import Sweep, grid
from relex.sweep.space import choice, loguniform, narrow, randint, uniform

__all__ = ["Sweep", "grid", "uniform", "loguniform", "randint", "choice", "narrow"]
