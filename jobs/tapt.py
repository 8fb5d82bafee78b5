"""Task-adaptive pretraining as an A/B: the tiny backbone from scratch against the same backbone
after `relex pretrain` on KLUE-RE's sentences, three seeds each, on a 10% stratified split.

First pretrain (the directory the grid names), then sweep and read the effect with its interval:

    relex pretrain --corpus ../shared/data/klue-re/klue-re-v1.1_train.json --out artifacts/tapt-tiny --steps 400 --save-every 100
    relex sweep jobs/tapt.py
    relex report artifacts/tapt

Data: the KLUE-RE v1.1 files in $RELEX_DATA (default ../shared/data/klue-re, relative to where
`relex sweep` runs). The pretrained directory: $RELEX_TAPT (default artifacts/tapt-tiny); a
directory is resolved to an absolute path on the driver, so the trials find it from their own
working directories. `relex/tiny-klue` (shipped) can stand in for it without pretraining.
"""

import os
from pathlib import Path

from relex.sweep import Sweep, grid

DATA = Path(os.environ.get("RELEX_DATA", "../shared/data/klue-re"))
TAPT = os.environ.get("RELEX_TAPT", "artifacts/tapt-tiny")

sweep = Sweep(
    name="tapt",
    train=DATA / "klue-re-v1.1_train.json",
    valid=0.1,
    labels=DATA / "relation_list.json",
    space=dict(
        backbone=grid(["relex/tiny", TAPT]),
        marker="typed_entity_marker_punct",
        head="marker",
        lr=1e-3,
        batch_size=32,
        epochs=2,
        warmup_ratio=0.1,
        eval_every=0,
        num_threads=1,
    ),
    seeds=[1, 2, 3],
    resources=dict(gpu=0, cpu=1),
    max_concurrent=2,
    max_failures=1,
)
