"""The smoke sweep's techniques over three seeds: what `relex report` needs to tell an effect from
seed noise.

The classification head (CLS vs. entity-marker) crossed with entity-relative position embeddings,
each configuration trained with seeds 1, 2 and 3 — 12 trials on the bundled Korean sample, tiny
local backbone, CPU, a few minutes. ASHA (reduction factor 2) may stop the weaker half at
evaluations 4 and 8; `relex report` compares each pair of trials at the evaluations both reached.

    relex sweep jobs/seeds.py
    relex leaderboard artifacts/seeds --by-config
    relex report artifacts/seeds --html artifacts/seeds/report.html
"""

from relex.data.sample import SAMPLE_PATH
from relex.sweep import Sweep, grid

sweep = Sweep(
    name="seeds",
    train=SAMPLE_PATH,
    valid=0.2,
    space=dict(
        head=grid(["cls", "marker"]),
        erpe=grid([False, True]),
        lr=3e-3,
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
    seeds=[1, 2, 3],
    asha=dict(metric="micro_f1", mode="max", grace_period=4, reduction_factor=2),
    resources=dict(gpu=0, cpu=1),
    max_concurrent=2,
    max_failures=1,
    reuse_actors=True,
)
