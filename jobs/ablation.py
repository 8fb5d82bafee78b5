"""The seed ablation on KLUE-RE, for a GPU cluster (see cluster.yaml and README).

Three Korean backbones crossed with every technique switch: the marker head, entity-relative
position embeddings (ERPE), FGM adversarial training, R-Drop, layer-wise learning-rate decay,
hard-negative mining and the loss — 3 x 2^7 = 384 trials, one GPU each, pruned by ASHA after
the first epoch (then the third). The validation set is 10% of the KLUE-RE training file,
stratified by label, the same split for every trial.

Data: the KLUE-RE v1.1 files in the directory $RELEX_DATA (default data/klue-re, relative to
where `relex sweep` runs): klue-re-v1.1_train.json and relation_list.json (the official label
order). On a cluster, put them on the shared storage and point RELEX_DATA there.

    relex sweep jobs/ablation.py --dry-run          # the 384 trials, nothing started
    relex sweep jobs/ablation.py --storage /mnt/efs/relex
"""

import os
from pathlib import Path

from relex.sweep import Sweep, grid

DATA = Path(os.environ.get("RELEX_DATA", "data/klue-re"))

sweep = Sweep(
    name="ablation",
    train=DATA / "klue-re-v1.1_train.json",
    valid=0.1,
    labels=DATA / "relation_list.json",
    negative_label="no_relation",
    space=dict(
        backbone=grid(["klue/roberta-base", "klue/bert-base",
                       "monologg/koelectra-base-v3-discriminator"]),
        head=grid(["cls", "marker"]),
        erpe=grid([False, True]),
        fgm=grid([0.0, 1.0]),  # epsilon
        rdrop=grid([0.0, 1.0]),  # alpha
        llrd=grid([1.0, 0.9]),  # decay per layer
        hnm=grid([0.0, 0.3]),  # fraction of negatives treated as hard
        loss=grid(["ce", "focal"]),
        marker="typed_entity_marker_punct",
        max_length=256,
        lr=3e-5,
        batch_size=32,
        epochs=5,
        warmup_ratio=0.1,
        weight_decay=0.01,
        eval_every=0,  # evaluate once per epoch: ASHA's unit is one epoch
        amp="auto",
    ),
    seeds=[42],
    asha=dict(metric="micro_f1", mode="max", grace_period=1, reduction_factor=3),
    resources=dict(gpu=1, cpu=4),
    max_concurrent=0,  # as many as there are GPUs
    max_failures=2,
    reuse_actors=False,  # a fresh process (and CUDA context) per trial; start-up is negligible here
)
