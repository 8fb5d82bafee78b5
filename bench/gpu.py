"""Benchmark 6: relex on one GPU — against the best-flags Hugging Face Trainer, MFU, where a
step's time goes, and how many trials a GPU finishes per hour when trials share it.

One command, nothing downloaded: a randomly initialised roberta-base-shaped encoder (hidden 768,
12 layers, 12 heads, RoBERTa with a WordPiece tokenizer, as klue/roberta-base) and its tokenizer
are built locally (``relex.model.backbone.build_tiny``, cached) from the KLUE-RE training
sentences; bf16 autocast. It prints:

1. relex (its defaults: ``typed_entity_marker_punct`` + marker head, dynamic padding,
   length-grouped batches, fused AdamW) vs the Hugging Face ``Trainer`` with its best flags
   (``DataCollatorWithPadding``, ``train_sampling_strategy="group_by_length"``, bf16): training
   examples/s and the ratio, validation micro-F1 of both;
2. model-FLOPs utilization of relex's training loop: 6·N·T + 12·L·T²·d FLOPs per example (N
   non-embedding parameters, T padded tokens per row, L layers, d hidden size) × examples/s ÷
   the device's dense bf16 peak (known for H100/H200/A100, else ``--peak-tflops``);
3. step-time breakdown of relex's step (batch collation and copy to the device, forward + loss,
   backward, clipping + optimizer), each phase timed with a device synchronisation around it;
4. trials per GPU-hour with 1, 2 and 4 trials sharing the GPU (``--gpus-per-trial 1/0.5/0.25``
   in a sweep): that many worker processes train at once on the device; a trial is
   ``--trial-epochs`` epochs of the full KLUE-RE training set; peak memory per trial;
5. scaling of one run over data-parallel workers on this node (``relex train --workers N``):
   training examples/s of relex's ``fit`` at 1, 2, 4 and 8 workers (``--scaling``), one GPU
   each, ``--batch-size`` per worker; counts the machine has no GPUs for are skipped. The
   workers are started by torch.distributed directly (``relex.train.distributed.run_local``,
   NCCL), running the same ``fit`` as Ray Train's workers, so Ray need not be installed.

    python bench/gpu.py                          # a GPU machine: a few minutes on an H100/H200
    python bench/gpu.py --device cpu --quick     # the same code paths on a CPU, small sizes

``--quick`` uses a small encoder (hidden 64, 2 layers), few rows and steps: a check that the
script works end to end, not figures to quote. Needs ``accelerate`` for the HF Trainer
(``pip install -e '.[bench]'``). Without KLUE-RE data (``--data``) it uses the bundled sample.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import _common as C  # noqa: E402

# dense bf16 tensor-core peak (no sparsity), TFLOP/s, by a substring of the device name
PEAK_BF16_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0}
FULL = dict(hidden=768, layers=12, heads=12, vocab=8000)
QUICK = dict(hidden=64, layers=2, heads=2, vocab=1000)


# ---------------------------------------------------------------------------- set-up
def pick_device(requested: str | None) -> str:
    import torch

    if requested:
        if requested == "cuda" and not torch.cuda.is_available():
            raise SystemExit("error: --device cuda but torch sees no GPU")
        return requested
    return "cuda" if torch.cuda.is_available() else "cpu"


def precision(device: str) -> tuple[str, bool]:
    """(relex amp mode, HF bf16 flag): bf16 on a GPU; on a CPU only where bf16 is native."""
    from relex.train.amp import native_bf16

    bf16 = device == "cuda" or native_bf16("cpu")
    return ("bf16" if bf16 else "off"), bf16


def load_rows(args):
    from relex.data import read_dataset
    from relex.data.sample import SAMPLE_PATH

    data = Path(args.data)
    full = C.load_klue(data) if data.is_file() else read_dataset(str(SAMPLE_PATH))
    source = data.name if data.is_file() else f"{SAMPLE_PATH.name} (bundled sample; KLUE-RE not at {data})"
    n_valid = min(args.valid_rows, len(full) // 5)
    train_ds, valid_ds = C.klue_subset(full, min(args.train_rows, len(full) - n_valid), n_valid)
    return full, train_ds, valid_ds, source


def build_backbone(train_ds, sizes: dict) -> str:
    from relex.model.backbone import build_tiny

    return str(build_tiny(train_ds.frame["sentence"].tolist(), **sizes))


def model_flops_per_example(backbone: str, tokens: float) -> tuple[float, int]:
    """Training FLOPs of one example of ``tokens`` tokens, and the non-embedding parameters."""
    from transformers import AutoConfig

    c = AutoConfig.from_pretrained(backbone)
    d, L, ff = c.hidden_size, c.num_hidden_layers, c.intermediate_size
    n = L * (4 * d * d + 2 * d * ff)  # attention projections + feed-forward, per layer
    return 6.0 * n * tokens + 12.0 * L * tokens * tokens * d, n


# ---------------------------------------------------------------------------- relex's step, by phase
def prepare(backbone: str, train_ds, cfg, device: str):
    """Tokenizer, features, model, optimizer and batches of relex's defaults, on ``device``."""
    import numpy as np
    import torch

    from relex.data.features import featurize
    from relex.data.markers import entity_types, prepare_tokenizer
    from relex.data.samplers import length_grouped_batches
    from relex.model.backbone import load_tokenizer, quiet_transformers
    from relex.model.model import build_model

    tok = load_tokenizer(backbone)
    prepare_tokenizer(tok, cfg.marker, entity_types(train_ds))
    feats = featurize(train_ds, tok, cfg.marker, cfg.max_length, use_cache=False)
    torch.manual_seed(cfg.seed)
    with quiet_transformers():
        model = build_model(cfg, backbone, len(train_ds.labels), len(tok)).to(device)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, fused=True)
    batches = length_grouped_batches(np.asarray(feats.lengths), cfg.batch_size, seed=cfg.seed)
    return feats, model, opt, batches


def run_steps(feats, model, opt, batches, steps: int, amp, *, phases: bool) -> dict:
    """``steps`` training steps; with ``phases`` each phase is timed between device syncs."""
    import torch

    from relex.data.features import collate

    dev = next(model.parameters()).device
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    t = {"data": 0.0, "forward": 0.0, "backward": 0.0, "optimizer": 0.0}
    examples = 0
    sync()
    t0 = time.perf_counter()
    for i in range(steps):
        idx = batches[i % len(batches)]
        a = time.perf_counter()
        batch = {k: v.to(dev, non_blocking=True) for k, v in collate(feats, idx).items()}
        if phases:
            sync()
        b = time.perf_counter()
        with amp.autocast():
            logits = model(batch)
        loss = torch.nn.functional.cross_entropy(logits.float(), batch["labels"])
        if phases:
            sync()
        c = time.perf_counter()
        loss.backward()
        if phases:
            sync()
        d = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if phases:
            sync()
        e = time.perf_counter()
        for k, (x, y) in zip(t, ((a, b), (b, c), (c, d), (d, e))):
            t[k] += y - x
        examples += len(idx)
    sync()
    total = time.perf_counter() - t0
    return {"steps": steps, "seconds": total, "examples": examples, "examples_per_s": examples / total,
            "phase_ms": {k: 1000 * v / steps for k, v in t.items()}}


def peak_memory_gib(device: str) -> float | None:
    import torch

    if device != "cuda":
        return None
    return torch.cuda.max_memory_allocated() / 2**30


# ---------------------------------------------------------------------------- packing workers
def worker(args) -> int:
    """One trial of the packing measurement: set up, wait for the others, train, report."""
    import torch

    from relex.config import TrialConfig
    from relex.data import read_dataset
    from relex.train.amp import resolve

    spec = json.loads(Path(args.worker).read_text())
    torch.set_num_threads(spec["threads"])
    cfg = TrialConfig(backbone="relex/tiny", max_length=spec["max_length"], batch_size=spec["batch_size"],
                      lr=1e-4, seed=spec["seed"])
    train_ds = read_dataset(spec["train"])
    feats, model, opt, batches = prepare(spec["backbone"], train_ds, cfg, spec["device"])
    amp = resolve(spec["amp"], spec["device"])
    run_steps(feats, model, opt, batches, 2, amp, phases=False)  # warm-up (kernels, allocator)
    ready = Path(spec["barrier"]) / f"ready-{spec['rank']}"
    ready.write_text("1")
    while len(list(Path(spec["barrier"]).glob("ready-*"))) < spec["world"]:
        time.sleep(0.05)
    res = run_steps(feats, model, opt, batches, spec["steps"], amp, phases=False)
    res["peak_gib"] = peak_memory_gib(spec["device"])
    Path(spec["out"]).write_text(json.dumps(res))
    return 0


def packing(k: int, *, device: str, amp: str, backbone: str, train_file: Path, steps: int,
            batch_size: int, max_length: int, threads: int, tmp: Path) -> dict:
    """``k`` trials training at once on the device; their examples/s each and in total."""
    d = tmp / f"pack{k}"
    d.mkdir()
    procs, outs = [], []
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
    for rank in range(k):
        spec = dict(rank=rank, world=k, barrier=str(d), out=str(d / f"out-{rank}.json"), device=device,
                    amp=amp, backbone=backbone, train=str(train_file), steps=steps, batch_size=batch_size,
                    max_length=max_length, threads=threads, seed=rank)
        (d / f"spec-{rank}.json").write_text(json.dumps(spec))
        outs.append(Path(spec["out"]))
        procs.append(subprocess.Popen([sys.executable, __file__, "--worker", str(d / f"spec-{rank}.json")],
                                      env=env))
    codes = [p.wait() for p in procs]
    if any(codes):
        raise SystemExit(f"error: a packing worker failed (exit codes {codes})")
    res = [json.loads(o.read_text()) for o in outs]
    return {"trials": k, "per_trial_examples_per_s": [r["examples_per_s"] for r in res],
            "examples_per_s": sum(r["examples_per_s"] for r in res),
            "peak_gib": [r["peak_gib"] for r in res]}


# ---------------------------------------------------------------------------- main
def main(argv=None) -> int:
    p = C.parser(__doc__.split("\n\n")[0])
    p.add_argument("--device", choices=("cuda", "cpu"), help="default: cuda when torch sees a GPU")
    p.add_argument("--train-rows", type=int, default=8000)
    p.add_argument("--valid-rows", type=int, default=1000)
    p.add_argument("--steps", type=int, default=250, help="optimizer steps of each training run")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-length", type=int, default=256)
    p.add_argument("--lr", type=float, default=5e-5)
    p.add_argument("--packing", default="1,2,4", help="trials per GPU to measure (default 1,2,4)")
    p.add_argument("--pack-steps", type=int, default=60, help="timed steps of each packing worker")
    p.add_argument("--trial-epochs", type=float, default=3.0,
                   help="a trial of the GPU-hour figure: this many epochs of the full training set")
    p.add_argument("--peak-tflops", type=float, help="the device's dense bf16 peak (default: known GPUs)")
    p.add_argument("--scaling", default="1,2,4,8", help="workers of one run to measure (default 1,2,4,8)")
    p.add_argument("--worker", help=argparse_hidden())
    args = p.parse_args(argv)
    if args.worker:
        return worker(args)
    if args.device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # the HF Trainer and relex's fit must agree
    import torch

    from trainer_throughput import hf_baseline, padded_tokens, relex_run

    device = pick_device(args.device)
    sizes = dict(FULL)
    if args.quick:
        sizes = dict(QUICK)
        args.train_rows, args.valid_rows, args.steps, args.pack_steps = 300, 100, 8, 6
        args.max_length = min(args.max_length, 128)
        args.packing = "1,2"
        args.scaling = "1,2"
    C.set_threads(args.threads)
    info = C.machine()
    name = torch.cuda.get_device_name(0) if device == "cuda" else info["cpu"]
    info["device"] = name
    C.print_machine(info)
    amp, hf_bf16 = precision(device)
    full, train_ds, valid_ds, source = load_rows(args)
    t0 = time.perf_counter()
    backbone = build_backbone(train_ds, sizes)
    print(f"device: {device} ({name}); precision: relex amp={amp}, HF bf16={hf_bf16}")
    print(f"data: {len(train_ds)} train / {len(valid_ds)} valid rows of {source}")
    print(f"backbone: RoBERTa hidden {sizes['hidden']}, {sizes['layers']} layers, {sizes['heads']} heads, "
          f"random init, WordPiece tokenizer (built in {time.perf_counter() - t0:.1f}s, cached): {backbone}")
    print(f"{args.steps} steps, batch {args.batch_size}, max_length {args.max_length}", flush=True)
    common = dict(steps=args.steps, batch_size=args.batch_size, lr=args.lr, max_length=args.max_length,
                  seed=42)
    report: dict = {"machine": info, "args": vars(args), "device": device}
    with tempfile.TemporaryDirectory(prefix="relex-gpu-bench-") as tmp:
        tmp = Path(tmp)
        # 1. relex vs the best-flags HF Trainer
        hf = hf_baseline(train_ds, valid_ds, backbone, workdir=tmp, best_flags=True, bf16=hf_bf16,
                         device=device, **common)
        rx = relex_run("relex default", train_ds, valid_ds, backbone, workdir=tmp, threads=args.threads,
                       amp=amp, **common)
        ratio = rx["examples_per_s"] / hf["examples_per_s"]
        print(C.table([[r["name"], f"{r['tokens_per_row']:.0f}", r["examples_per_s"], r["micro_f1"], r["train_s"]]
                       for r in (hf, rx)], ["run", "tokens/row", "ex/s", "micro-F1", "train s"]))
        print(f"relex / best-flags HF Trainer: {ratio:.2f}x examples/s")
        report.update(hf=hf, relex=rx, ratio=ratio)

        # 2. MFU of relex's training loop
        from relex.config import TrialConfig

        cfg = TrialConfig(backbone="relex/tiny", max_length=args.max_length, batch_size=args.batch_size,
                          lr=args.lr, seed=42, amp=amp)
        tokens = padded_tokens(train_ds, backbone, cfg)
        flops, n_params = model_flops_per_example(backbone, tokens)
        peak = args.peak_tflops or next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)
        achieved = flops * rx["examples_per_s"] / 1e12
        mfu = achieved / peak if peak else None
        print(f"\nMFU: {n_params / 1e6:.1f} M non-embedding parameters, {tokens:.1f} padded tokens/row, "
              f"{flops / 1e9:.2f} GFLOP per training example, {achieved:.2f} TFLOP/s achieved"
              + (f" of {peak:g} peak = {100 * mfu:.1f}% MFU" if peak else " (peak unknown: --peak-tflops)"))
        report.update(tokens_per_row=tokens, flops_per_example=flops, achieved_tflops=achieved,
                      peak_tflops=peak, mfu=mfu)

        # 3. step-time breakdown
        from relex.train.amp import resolve

        feats, model, opt, batches = prepare(backbone, train_ds, cfg, device)
        amp_obj = resolve(amp, device)
        run_steps(feats, model, opt, batches, 3, amp_obj, phases=False)
        br = run_steps(feats, model, opt, batches, max(10, args.steps // 5), amp_obj, phases=True)
        total = sum(br["phase_ms"].values())
        print("\nstep-time breakdown (ms per step, phases timed between device syncs):")
        print(C.table([[k, v, f"{100 * v / total:.0f}%"] for k, v in br["phase_ms"].items()] + [["total", total, "100%"]],
                      ["phase", "ms", "share"]))
        report["breakdown_ms"] = br["phase_ms"]
        del feats, model, opt
        if device == "cuda":
            torch.cuda.empty_cache()

        # 4. trials per GPU-hour, 1/2/4 trials sharing the device
        train_file = tmp / "train.json"
        C.write_dataset_json(train_ds, train_file)
        trial_examples = args.trial_epochs * (len(full) - len(valid_ds))
        rows = []
        for k in [int(x) for x in args.packing.split(",")]:
            pk = packing(k, device=device, amp=amp, backbone=backbone, train_file=train_file,
                         steps=args.pack_steps, batch_size=args.batch_size, max_length=args.max_length,
                         threads=args.threads, tmp=tmp)
            pk["trials_per_hour"] = 3600 * pk["examples_per_s"] / trial_examples
            rows.append(pk)
            mem = [m for m in pk["peak_gib"] if m is not None]
            print(f"  {k} trial(s) at once: {pk['examples_per_s']:.1f} ex/s in total", flush=True)
            pk["peak_gib_max"] = max(mem) if mem else None
        base = rows[0]["trials_per_hour"]
        print(f"\ntrials per GPU-hour (a trial: {args.trial_epochs:g} epochs of {len(full) - len(valid_ds)} rows):")
        print(C.table([[r["trials"], f"{1 / r['trials']:g}", r["examples_per_s"], r["trials_per_hour"],
                        f"{r['trials_per_hour'] / base:.2f}x",
                        "-" if r["peak_gib_max"] is None else f"{r['peak_gib_max']:.2f}"] for r in rows],
                      ["trials/GPU", "--gpus-per-trial", "ex/s total", "trials/hour", "vs 1", "peak GiB/trial"]))
        report["packing"] = rows

        # 5. one run on 1, 2, 4, 8 workers
        report["scaling"] = scaling([int(x) for x in args.scaling.split(",")], device=device, amp=amp,
                                    backbone=backbone, train_ds=train_ds, valid_ds=valid_ds, args=args,
                                    tmp=tmp)
    C.write_json(args.json, report)
    return 0


# ---------------------------------------------------------------------------- scaling over workers
def scaling(counts: list[int], *, device: str, amp: str, backbone: str, train_ds, valid_ds, args,
            tmp: Path) -> list[dict]:
    """Training examples/s of one run on each count of workers this node has devices for."""
    import torch

    from relex.config import TrialConfig

    have = torch.cuda.device_count() if device == "cuda" else os.cpu_count() or 1
    rows = []
    for k in counts:
        if k > have:
            print(f"  {k} workers: skipped ({'GPUs' if device == 'cuda' else 'CPU cores'}: {have})")
            continue
        cfg = TrialConfig(backbone=backbone, max_length=args.max_length, batch_size=args.batch_size,
                          lr=args.lr, seed=42, amp=amp, workers=k, epochs=1000, max_steps=args.steps,
                          eval_every=0, num_threads=1 if device == "cpu" else 0)
        out = tmp / f"scale{k}"
        workers_fit(cfg, train_ds, valid_ds, out, backbone, device)
        m = json.loads((out / "metrics.json").read_text())
        rows.append({"workers": k, "global_batch": cfg.global_batch(), "steps": m["steps"],
                     "examples_per_s": m["examples_per_s"], "micro_f1": m["micro_f1"]})
        print(f"  {k} worker(s): {m['examples_per_s']:.1f} training ex/s", flush=True)
    if rows:
        base = rows[0]["examples_per_s"] / rows[0]["workers"]
        print(f"\none run over data-parallel workers ({args.batch_size} examples per worker per step, "
              f"{args.steps} steps):")
        print(C.table([[r["workers"], r["global_batch"], r["examples_per_s"],
                        f"{r['examples_per_s'] / (base * r['workers']):.2f}", r["micro_f1"]] for r in rows],
                      ["workers", "global batch", "ex/s", "scaling efficiency", "micro-F1"]))
    return rows


def workers_fit(cfg, train_ds, valid_ds, out: Path, backbone: str, device: str) -> None:
    """relex's fit on ``cfg.workers`` processes of this node (one: the plain single-worker fit)."""
    from relex.train.distributed import WorkerRun, prepare_inputs, run_local
    from relex.train.fit import fit

    if cfg.workers == 1:
        fit(cfg, train_ds, valid_ds, out, progress=False, backbone_path=backbone, device=device)
        return
    bb, cache = prepare_inputs(cfg, train_ds, valid_ds, backbone_path=backbone)
    job = WorkerRun(cfg, train_ds, valid_ds, str(out), features_cache=cache, backbone_path=bb)
    run_local(cfg.workers, job.fit, backend="nccl" if device == "cuda" else "gloo")


def argparse_hidden():
    import argparse

    return argparse.SUPPRESS


if __name__ == "__main__":
    sys.exit(main())
