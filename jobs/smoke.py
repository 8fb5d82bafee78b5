"""The embedded smoke sweep: tiny local backbone, the bundled sample, CPU, a few minutes.

Eight trials — the classification head (CLS vs. entity-marker), entity-relative position
embeddings and two learning rates — on the Korean sample shipped with relex, with a 20%
stratified validation split. Each trial evaluates every 18 optimizer steps (about half an
epoch); ASHA (reduction factor 2) stops trials in the weaker half at evaluations 4 and 8, so the
slow learners end early. Two trials run at once, one CPU each.

    relex sweep jobs/smoke.py
    relex leaderboard artifacts/smoke
"""

from relex.data.sample import SAMPLE_PATH
from relex.sweep import Sweep, grid

sweep = Sweep(
    name="smoke",
    train=SAMPLE_PATH,
    valid=0.2,
    space=dict(
        head=grid(["cls", "marker"]),
        erpe=grid([False, True]),
        lr=grid([3e-3, 5e-4]),
        backbone="relex/tiny",
        tiny_hidden=64,
        tiny_layers=2,
        tiny_heads=2,
        marker="typed_entity_marker_punct",
        max_length=96,
        batch_size=16,
        epochs=6,
        eval_every=18,
        warmup_ratio=0.1,
        eval_batch_size=64,
        num_threads=1,
        amp="off",
    ),
    seeds=[42],
    asha=dict(metric="micro_f1", mode="max", grace_period=4, reduction_factor=2),
    resources=dict(gpu=0, cpu=1),
    max_concurrent=2,
    max_failures=1,
    reuse_actors=True,
)
