"""5-fold cross-validation on the bundled sample: two configurations × five folds, CPU.

Each configuration trains five times, each time holding out one stratified fold; the
leaderboard ranks configurations by their cross-validated mean ± sd, and each configuration's
out-of-fold probabilities (every row predicted once, by the model that did not see it) land in
artifacts/kfold/oof_probs/. A configuration's five fold checkpoints are a ready ensemble:

    relex sweep jobs/kfold.py
    relex leaderboard artifacts/kfold
    relex ensemble artifacts/kfold --out artifacts/kfold-ens --config t001
    relex predict artifacts/kfold-ens relex/data/sample/klue_sample.json --output artifacts/kfold.csv
"""

from relex.data.sample import SAMPLE_PATH
from relex.sweep import Sweep, grid

sweep = Sweep(
    name="kfold",
    train=SAMPLE_PATH,
    folds=5,
    fold_seed=0,
    space=dict(head=grid(["cls", "marker"]), backbone="relex/tiny", tiny_hidden=64, tiny_layers=2,
               tiny_heads=2, marker="typed_entity_marker_punct", max_length=96, batch_size=16,
               epochs=4, lr=3e-3, warmup_ratio=0.1, eval_batch_size=64, num_threads=1, amp="off"),
    resources=dict(gpu=0, cpu=1),
    max_concurrent=2,
    max_failures=1,
)
