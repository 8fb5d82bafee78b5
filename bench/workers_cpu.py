"""Benchmark: one run on 2 data-parallel CPU workers (gloo) against 1 worker with twice the
batch — a correctness and overhead figure, not a speed claim (a 2-core machine has no spare
cores for a second worker; the GPU scaling figure is bench/gpu.py's section 5).

Both runs train relex/tiny without dropout (backbone and head) for ``--steps`` steps on the same
global batches: 1 worker x ``2b`` by the plain single-worker ``fit``, 2 workers x ``b`` by the
same ``fit`` in two torch.distributed processes (``relex.train.distributed.run_local``, what Ray
Train's workers run). It prints the largest weight difference between them after the steps
(next to how far the weights moved), and the training examples/s of each (time in training
steps only; the workers' start-up is left out).

    python bench/workers_cpu.py              # KLUE-RE rows when present, else the bundled sample
    python bench/workers_cpu.py --quick
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import _common as C  # noqa: E402


def no_dropout_copy(backbone: str, out: Path) -> str:
    shutil.copytree(backbone, out)
    conf = json.loads((out / "config.json").read_text())
    conf.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (out / "config.json").write_text(json.dumps(conf))
    return str(out)


def model_weights(state: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return {k: v for k, v in load_file(str(state / "tensors.safetensors")).items() if k.startswith("model/")}


def max_diff(a: dict, b: dict) -> float:
    return max(float(np.abs(a[k] - b[k]).max()) for k in a)


def main(argv=None) -> int:
    p = C.parser(__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--batch-size", type=int, default=16, help="per worker (1 worker: twice this)")
    p.add_argument("--train-rows", type=int, default=4000)
    args = p.parse_args(argv)
    if args.quick:
        args.steps, args.train_rows = 10, 400

    from relex.config import TrialConfig
    from relex.data import read_dataset
    from relex.data.sample import SAMPLE_PATH
    from relex.train.distributed import WorkerRun, prepare_inputs, run_local
    from relex.train.fit import fit, prepare, save_state

    info = C.machine()
    C.print_machine(info)
    data = Path(args.data)
    full = C.load_klue(data) if data.is_file() else read_dataset(str(SAMPLE_PATH))
    n_valid = min(500, len(full) // 5)
    train_ds, valid_ds = C.klue_subset(full, min(args.train_rows, len(full) - n_valid), n_valid)
    base = dict(head_dropout=0.0, max_length=128, lr=1e-3, warmup_ratio=0.0, epochs=1000,
                max_steps=args.steps, eval_every=0, num_threads=max(1, args.threads), amp="off", seed=42)
    with tempfile.TemporaryDirectory(prefix="relex-workers-bench-") as tmp:
        tmp = Path(tmp)
        backbone = no_dropout_copy(C.tiny_backbone(train_ds, TrialConfig(**base)), tmp / "backbone")
        one = TrialConfig(**base, backbone=backbone, batch_size=2 * args.batch_size)
        two = TrialConfig(**base, backbone=backbone, batch_size=args.batch_size, workers=2)
        start = model_weights(save_state(prepare(one, train_ds, valid_ds, tmp / "start",
                                                 backbone_path=backbone), tmp / "start" / "state"))
        fit(one, train_ds, valid_ds, tmp / "one", state_dir=tmp / "one" / "state", progress=False,
            backbone_path=backbone)
        bb, cache = prepare_inputs(two, train_ds, valid_ds, backbone_path=backbone)
        run_local(2, WorkerRun(two, train_ds, valid_ds, str(tmp / "two"), state_dir=str(tmp / "two" / "state"),
                               features_cache=cache, backbone_path=bb).fit)
        w1, w2 = model_weights(tmp / "one" / "state"), model_weights(tmp / "two" / "state")
        m1, m2 = (json.loads((tmp / d / "metrics.json").read_text()) for d in ("one", "two"))
    diff, moved = max_diff(w1, w2), max_diff(w1, start)
    print(f"{len(train_ds)} training rows, {args.steps} steps of {2 * args.batch_size} examples, "
          f"relex/tiny without dropout, {base['num_threads']} thread(s) per process")
    print(C.table([["1 worker x batch %d" % (2 * args.batch_size), m1["examples_per_s"], m1["micro_f1"]],
                   ["2 workers x batch %d (gloo)" % args.batch_size, m2["examples_per_s"], m2["micro_f1"]]],
                  ["run", "train ex/s", "micro-F1"]))
    print(f"largest weight difference after {args.steps} steps: {diff:.2e} (the weights moved up to "
          f"{moved:.2e}); 2 workers / 1 worker examples/s: {m2['examples_per_s'] / m1['examples_per_s']:.2f}x")
    C.write_json(args.json, {"machine": info, "args": vars(args), "max_weight_diff": diff,
                             "max_weight_move": moved, "one": m1, "two": m2})
    return 0


if __name__ == "__main__":
    sys.exit(main())
