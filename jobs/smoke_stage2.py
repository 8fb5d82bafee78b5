"""A second stage after jobs/smoke.py: R-Drop and FGM tried around the smoke sweep's two best
configurations (run `relex sweep jobs/smoke.py` first). Trials record the base configuration
they grew from in the `lineage` column, shown as `from` on the leaderboard.

    relex sweep jobs/smoke_stage2.py
    relex leaderboard artifacts/smoke_stage2
"""

from relex.sweep import Sweep, grid

sweep = Sweep(
    name="smoke_stage2",
    base="artifacts/smoke",  # data settings (train, valid, split seed) come from the base sweep
    top=2,
    space=dict(rdrop=grid([0.0, 1.0]), fgm=grid([0.0, 0.5])),
    asha=dict(metric="micro_f1", mode="max", grace_period=4, reduction_factor=2),
    resources=dict(gpu=0, cpu=1),
    max_concurrent=2,
    max_failures=1,
)
