"""Sweeps: job files (``Sweep``, ``grid``), the Ray Tune runner, results and the live leaderboard.

Only the job-file API is imported here, so job files load without Ray.
"""

from relex.sweep.job import Sweep, grid

__all__ = ["Sweep", "grid"]
