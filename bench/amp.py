"""Benchmark 7: bf16 autocast on the CPU — validation micro-F1 over seeds and training speed.

``relex.train.fit`` on the same KLUE-RE rows and tiny backbone, once in fp32 (``amp=off``) and
once under bf16 autocast (``amp=bf16``), for each of several seeds. Prints whether this CPU has
native bf16 (``relex.train.amp.native_bf16``: AVX512-BF16 or AMX), so what ``amp=auto`` picks;
per seed micro-F1 and AUPRC of both; the mean and spread of the F1 difference against the
seed-to-seed spread of fp32 itself; and training examples/s of both (the ratio is what
``amp=auto`` gains or, where bf16 is emulated, would lose).

    .venv/bin/python bench/amp.py [--seeds 1,2,3] [--quick] [--data FILE]
"""

from __future__ import annotations

import statistics
import sys
import tempfile
from pathlib import Path

import _common as C


def main(argv=None) -> int:
    p = C.parser(__doc__.split("\n\n")[0])
    p.add_argument("--seeds", default="1,2,3")
    p.add_argument("--train-rows", type=int, default=1500)
    p.add_argument("--valid-rows", type=int, default=500)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--layers", type=int, default=2)
    args = p.parse_args(argv)
    if args.quick:
        args.train_rows, args.valid_rows, args.steps, args.seeds = 200, 100, 6, "1"
    data = C.require_data(args.data)
    C.set_threads(args.threads)
    info = C.machine()
    C.print_machine(info)
    from relex.config import TrialConfig
    from relex.train.fit import fit
    from relex.train.amp import native_bf16, resolve

    native = native_bf16("cpu")
    print(f"native bf16 on this CPU: {'yes' if native else 'no'} -> amp=auto picks {resolve('auto', 'cpu').mode}")
    train_ds, valid_ds = C.klue_subset(C.load_klue(data), args.train_rows, args.valid_rows)
    backbone = C.tiny_backbone(train_ds)
    seeds = [int(s) for s in args.seeds.split(",")]
    print(f"data: {len(train_ds)} train / {len(valid_ds)} valid rows; tiny {args.hidden}x{args.layers}; "
          f"{args.steps} steps; seeds {seeds}", flush=True)
    rows, out = [], {"machine": info, "native_bf16": native, "runs": []}
    with tempfile.TemporaryDirectory(prefix="relex-amp-bench-") as tmp:
        for seed in seeds:
            res = {}
            for mode in ("off", "bf16"):
                cfg = TrialConfig(max_length=256, batch_size=32, lr=1e-3, max_steps=args.steps, epochs=1000,
                                  eval_every=args.steps, seed=seed, amp=mode, tiny_hidden=args.hidden,
                                  tiny_layers=args.layers, num_threads=args.threads)
                r = fit(cfg, train_ds, valid_ds, Path(tmp) / f"{mode}-{seed}", progress=False,
                        backbone_path=backbone, features_cache=Path(tmp) / "features")
                res[mode] = r
                out["runs"].append({"seed": seed, "amp": mode, "micro_f1": r.best_metrics["micro_f1"],
                                    "auprc": r.best_metrics["auprc"], "examples_per_s": r.examples_per_s})
            rows.append([seed, res["off"].best_metrics["micro_f1"], res["bf16"].best_metrics["micro_f1"],
                         res["bf16"].best_metrics["micro_f1"] - res["off"].best_metrics["micro_f1"],
                         res["off"].best_metrics["auprc"], res["bf16"].best_metrics["auprc"],
                         res["off"].examples_per_s, res["bf16"].examples_per_s,
                         res["bf16"].examples_per_s / res["off"].examples_per_s])
            print(f"  seed {seed}: fp32 F1 {rows[-1][1]:.2f}, bf16 F1 {rows[-1][2]:.2f}, "
                  f"bf16 speed {rows[-1][8]:.2f}x", flush=True)
    print(C.table(rows, ["seed", "F1 fp32", "F1 bf16", "ΔF1", "AUPRC fp32", "AUPRC bf16", "ex/s fp32",
                         "ex/s bf16", "bf16 speed"]))
    deltas = [r[3] for r in rows]
    f32 = [r[1] for r in rows]
    if len(rows) > 1:
        print(f"ΔF1 (bf16 − fp32): mean {statistics.mean(deltas):+.2f}, sd {statistics.stdev(deltas):.2f}; "
              f"fp32 F1 across seeds: sd {statistics.stdev(f32):.2f}")
    print(f"bf16 / fp32 examples/s: {statistics.median(r[8] for r in rows):.2f}x (median)")
    C.write_json(args.json, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
