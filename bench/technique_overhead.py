"""Benchmark 2: the cost of one training step with R-Drop, FGM or ERPE, against the plain step.

One training step = what ``relex.train.fit``'s loop does per optimizer step: collate the batch
(dynamic padding; ERPE distances when on), forward, loss, backward (FGM: the adversarial
forward + backward and the restore), gradient clipping, AdamW, scheduler. The script drives the
trainer's own step (``relex.train.step.train_step``) on a run set up by ``relex.train.fit.prepare``
exactly as ``fit`` sets it up, so the measured code is the code that trains.

Every configuration trains on the SAME batch (32 KLUE-RE rows: the length-grouped batch of
median padded length). After a warm-up, the configurations are timed in interleaved rounds
(plain, R-Drop, FGM, ERPE, plain, …) so that a change of machine load hits all of them alike;
the figure is the ratio of the median step time to the plain step's median.

Targets: R-Drop ≤ 1.7×, FGM ≤ 2.1×, ERPE ≤ 1.1× the plain step.

    .venv/bin/python bench/technique_overhead.py [--quick] [--data FILE] [--profile]
"""

from __future__ import annotations

import statistics
import os
import sys
import tempfile
import time
from pathlib import Path

import _common as C

TARGETS = {"R-Drop": 1.7, "FGM": 2.1, "ERPE": 1.1}


def make_trainer(cfg, train_ds, valid_ds, backbone: str, workdir: Path):
    from relex.train.fit import prepare

    workdir.mkdir(parents=True, exist_ok=True)
    return prepare(cfg, train_ds, valid_ds, workdir, progress=False, features_cache=workdir / "features",
                   backbone_path=backbone, device="cpu")


def one_step(run, idx) -> float:
    from relex.train.fit import micro_batch
    from relex.train.step import train_step

    t0 = time.perf_counter()
    train_step(run, [micro_batch(run, idx, None)])
    return time.perf_counter() - t0


def main(argv=None) -> int:
    p = C.parser(__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=2000, help="training rows the trainers are set up on")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--warmup", type=int, default=5, help="untimed steps per configuration")
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--per-round", type=int, default=5, help="timed steps per configuration per round")
    p.add_argument("--rdrop", type=float, default=1.0, help="R-Drop alpha")
    p.add_argument("--fgm", type=float, default=1.0, help="FGM epsilon")
    p.add_argument("--profile", action="store_true",
                   help="also print torch.profiler's top operators of each configuration's step")
    args = p.parse_args(argv)
    if args.quick:
        args.rows, args.warmup, args.rounds, args.per_round = 400, 2, 2, 3
    data = C.require_data(args.data)
    C.set_threads(args.threads)
    info = C.machine()
    C.print_machine(info)

    import numpy as np
    import torch

    from relex.config import TrialConfig
    from relex.data.samplers import length_grouped_batches

    full = C.load_klue(data)
    train_ds, valid_ds = C.klue_subset(full, args.rows, 200)
    del full
    backbone = C.tiny_backbone(train_ds)
    base = TrialConfig(backbone="relex/tiny", batch_size=args.batch_size, lr=1e-3, epochs=1000,
                       amp="off", seed=42, num_threads=max(args.threads, 0))
    configs = {
        "plain": base,
        "R-Drop": base.replace(rdrop=args.rdrop),
        "FGM": base.replace(fgm=args.fgm),
        "ERPE": base.replace(erpe=True),
    }
    times: dict[str, list[float]] = {k: [] for k in configs}
    # fit() runs CPU training with deterministic algorithms on; so do we
    det = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        with tempfile.TemporaryDirectory(prefix="relex-bench-") as tmp:
            trainers = {k: make_trainer(c, train_ds, valid_ds, backbone, Path(tmp) / k.replace("-", ""))
                        for k, c in configs.items()}
            feats = trainers["plain"].train_feats
            lengths = np.asarray(feats.lengths)
            batches = length_grouped_batches(lengths, args.batch_size, seed=0)
            batches = [b for b in batches if len(b) == args.batch_size]
            pad = np.array([lengths[b].max() for b in batches])
            idx = batches[int(np.argsort(pad)[len(pad) // 2])]
            print(f"batch: {len(idx)} rows, padded to {int(lengths[idx].max())} tokens "
                  f"(rows {int(lengths[idx].min())}–{int(lengths[idx].max())}); marker "
                  f"{base.marker}, head {base.head}, tiny {base.tiny_hidden}x{base.tiny_layers}; "
                  f"R-Drop α={args.rdrop:g}, FGM ε={args.fgm:g}")
            for name, tr in trainers.items():
                for _ in range(args.warmup):
                    one_step(tr, idx)
            for _ in range(args.rounds):
                for name, tr in trainers.items():
                    for _ in range(args.per_round):
                        times[name].append(one_step(tr, idx))
            if args.profile:
                profile(trainers, idx)
    finally:
        torch.use_deterministic_algorithms(det)

    med = {k: statistics.median(v) for k, v in times.items()}
    mean = {k: statistics.fmean(v) for k, v in times.items()}
    rows, out = [], {}
    for name in configs:
        r_med = med[name] / med["plain"]
        r_mean = mean[name] / mean["plain"]
        target = TARGETS.get(name)
        rows.append([name, len(times[name]), med[name] * 1000, mean[name] * 1000, f"{r_med:.2f}x",
                     f"{r_mean:.2f}x", f"≤ {target:g}x" if target else "-",
                     C.verdict(r_med, target, higher_is_better=False) if target else "-"])
        out[name] = {"steps": len(times[name]), "median_ms": med[name] * 1000,
                     "mean_ms": mean[name] * 1000, "ratio_median": r_med, "ratio_mean": r_mean,
                     "target": target}
    print()
    print(C.table(rows, ["step", "n", "median ms", "mean ms", "ratio (median)", "ratio (mean)",
                         "target", "met?"]))
    C.write_json(args.json, {"machine": info, "args": vars(args), "results": out,
                             "load_avg_1m_end": os.getloadavg()[0]})
    return 0


def profile(trainers, idx) -> None:
    from torch.profiler import ProfilerActivity, profile as tprof

    for name, tr in trainers.items():
        with tprof(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(5):
                one_step(tr, idx)
        print(f"\n== torch.profiler, 5 steps, {name} (top 12 by self CPU time)")
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))


if __name__ == "__main__":
    sys.exit(main())
