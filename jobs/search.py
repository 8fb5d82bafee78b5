"""Searching continuous knobs: TPE under ASHA on the embedded default, about 3 minutes on 2 idle CPU cores.

Twelve configurations of learning rate (log-uniform), warm-up ratio and weight decay, each
suggested by Optuna's TPE sampler from the trials that finished before it, on the Korean sample
shipped with relex with a 20% stratified validation split. Two trials run at once, so TPE sees
results before it suggests again; ASHA (reduction factor 2) stops the weaker half at
evaluations 2 and 4. The study lives in artifacts/search/study.journal: `--resume` after any
interruption continues it without losing or repeating a suggestion. Needs the search extra
(pip install 'relex[search]'); search="random" needs nothing more.

    relex sweep jobs/search.py --dry-run
    relex sweep jobs/search.py
    relex report artifacts/search
"""

from relex.data.sample import SAMPLE_PATH
from relex.sweep import Sweep, loguniform, uniform

sweep = Sweep(
    name="search",
    train=SAMPLE_PATH,
    valid=0.2,
    space=dict(
        lr=loguniform(1e-4, 5e-3),
        warmup_ratio=uniform(0.0, 0.3, q=0.05),
        weight_decay=uniform(0.0, 0.1),
        head="marker",
        backbone="relex/tiny",
        tiny_hidden=64,
        tiny_layers=2,
        tiny_heads=2,
        marker="typed_entity_marker_punct",
        max_length=96,
        batch_size=16,
        epochs=6,
        eval_every=18,
        eval_batch_size=64,
        num_threads=1,
        amp="off",
    ),
    num_samples=12,
    search="tpe",
    search_seed=0,
    seeds=[42],
    asha=dict(metric="micro_f1", mode="max", grace_period=2, reduction_factor=2),
    resources=dict(gpu=0, cpu=1),
    max_concurrent=2,
    max_failures=1,
)
