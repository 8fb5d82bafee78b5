"""Benchmark 1: relex's trainer against two Hugging Face ``Trainer`` baselines, on CPU.

Both baselines run ``AutoModelForSequenceClassification`` under the Hugging Face ``Trainer``
with typed entity markers (``[SUBJ-PER] … [/SUBJ-PER]``, added as special tokens and inserted by
character offsets with ``relex.data.markers``):

* ``HF Trainer, pad 256`` — what the seed write-ups ran: every example padded to ``max_length``
  256 (``padding="max_length", truncation=True``), random batches;
* ``HF Trainer, best flags`` — the Trainer at its best for this job: dynamic padding
  (``DataCollatorWithPadding``), length-grouped sampling
  (``train_sampling_strategy="group_by_length"``) and bf16 autocast where the device runs it
  natively (``relex.train.amp.native_bf16``; relex then uses bf16 too, as ``amp=auto`` does).

relex runs ``relex.train.fit`` on the same rows, the same tiny backbone (same directory), the
same batch size, learning rate, schedule, weight decay, gradient clipping and number of
optimizer steps:

* ``relex typed+cls``: ``marker=typed_entity_marker, head=cls`` — like for like with the
  baseline's input and head; what differs is relex's dynamic padding and length-grouped batches;
* ``relex default``: relex's default representation (``typed_entity_marker_punct`` + marker head).

Throughput is training examples per second of the training loop (relex: ``FitResult.train_s``,
the time inside training steps; baseline: ``train_runtime`` of ``Trainer.train``). Validation
micro-F1 (KLUE: no_relation excluded) of the final model comes from ``relex.metrics.compute``
for both. The end-to-end wall time (tokenization, model set-up, training, evaluation) is
printed too.

    .venv/bin/python bench/trainer_throughput.py [--quick] [--data FILE]

Needs ``accelerate`` (the Hugging Face Trainer requires it): ``pip install accelerate``.
"""

from __future__ import annotations

import gc
import os
import sys
import tempfile
import time
from pathlib import Path

import _common as C

TARGET_SPEEDUP = 3.0  # like for like, against the pad-256 baseline
TARGET_VS_BEST = 1.5  # relex defaults against the best-flags baseline


def hf_baseline(train_ds, valid_ds, backbone: str, *, steps: int, batch_size: int, lr: float,
                max_length: int, seed: int, workdir: Path, best_flags: bool = False,
                bf16: bool = False, device: str = "cpu") -> dict:
    """The Hugging Face Trainer: padding to ``max_length`` (the seeds'), or with
    ``best_flags`` dynamic padding + length-grouped sampling (+ ``bf16`` autocast)."""
    import numpy as np
    import torch
    from transformers import (AutoModelForSequenceClassification, AutoTokenizer,
                              DataCollatorWithPadding, Trainer, TrainingArguments)
    from transformers.utils import logging as hf_logging

    from relex import metrics as M
    from relex.data import markers

    hf_logging.set_verbosity_error()
    t_wall = time.perf_counter()
    style = "typed_entity_marker"
    tok = AutoTokenizer.from_pretrained(backbone)
    markers.prepare_tokenizer(tok, style, markers.entity_types(train_ds, valid_ds))

    def encode(ds):
        f = ds.frame
        texts = markers.mark_many(f["sentence"].tolist(), f["subj_start"], f["subj_end"],
                                  f["subj_type"].tolist(), f["obj_start"], f["obj_end"],
                                  f["obj_type"].tolist(), style).texts
        padding = False if best_flags else "max_length"  # best flags: the collator pads per batch
        enc = tok(texts, padding=padding, truncation=True, max_length=max_length)
        return enc, ds.label_ids()

    class REDataset(torch.utils.data.Dataset):  # the seed write-ups' dataset class
        def __init__(self, enc, labels):
            self.enc, self.labels = enc, labels

        def __getitem__(self, i):
            item = {k: torch.tensor(v[i]) for k, v in self.enc.items()}
            item["labels"] = torch.tensor(int(self.labels[i]))
            return item

        def __len__(self):
            return len(self.labels)

    t0 = time.perf_counter()
    train_set = REDataset(*encode(train_ds))
    valid_set = REDataset(*encode(valid_ds))
    tokenize_s = time.perf_counter() - t0

    torch.manual_seed(seed)
    model = AutoModelForSequenceClassification.from_pretrained(backbone, num_labels=len(train_ds.labels))
    model.resize_token_embeddings(len(tok))
    args = TrainingArguments(
        output_dir=str(workdir / "hf"), per_device_train_batch_size=batch_size,
        per_device_eval_batch_size=128, max_steps=steps, learning_rate=lr,
        warmup_steps=int(0.1 * steps), weight_decay=0.01, lr_scheduler_type="linear",
        max_grad_norm=1.0, save_strategy="no", eval_strategy="no", logging_steps=max(1, steps // 5),
        report_to=[], use_cpu=device == "cpu", seed=seed, dataloader_num_workers=0, disable_tqdm=True,
        bf16=bf16, bf16_full_eval=False,
        **({"train_sampling_strategy": "group_by_length"} if best_flags else {}),
    )
    extra = {}
    if best_flags:
        extra["data_collator"] = DataCollatorWithPadding(tok)
        # (the Trainer's length-grouped sampler reads each item's input_ids once for its lengths)
        train_set.lengths = [len(x) for x in train_set.enc["input_ids"]]
    trainer = Trainer(model=model, args=args, train_dataset=train_set, **extra)
    out = trainer.train()
    train_s = float(out.metrics["train_runtime"])
    pred = trainer.predict(valid_set)
    probs = M.softmax(np.asarray(pred.predictions, dtype=np.float64))
    m = M.compute(valid_ds.label_ids(), probs, train_ds.labels.names, train_ds.labels.negative,
                  per_class=False)
    if best_flags:
        from transformers.trainer_pt_utils import LengthGroupedSampler

        g = torch.Generator().manual_seed(seed)
        order = list(LengthGroupedSampler(batch_size, lengths=train_set.lengths, generator=g))
        lens = np.asarray(train_set.lengths)[order]
        batches = [lens[i:i + batch_size] for i in range(0, len(lens), batch_size)]
        tokens_per_row = float(sum(b.max() * len(b) for b in batches) / len(lens))
    else:
        tokens_per_row = float(max_length)
    name = "HF Trainer, best flags" + (" (bf16)" if bf16 else "") if best_flags else "HF Trainer, pad 256"
    return {
        "name": name, "steps": int(out.global_step), "train_s": train_s,
        "examples": int(out.global_step) * batch_size,
        "examples_per_s": int(out.global_step) * batch_size / train_s,
        "micro_f1": m["micro_f1"], "auprc": m["auprc"], "wall_s": time.perf_counter() - t_wall,
        "tokenize_s": tokenize_s, "tokens_per_row": tokens_per_row,
    }


def padded_tokens(train_ds, backbone: str, cfg) -> float:
    """Mean tokens per row after relex's padding (the longest row of each length-grouped batch)."""
    import numpy as np

    from relex.data.features import featurize
    from relex.data.markers import entity_types, prepare_tokenizer
    from relex.data.samplers import length_grouped_batches
    from relex.model.backbone import load_tokenizer

    tok = load_tokenizer(backbone)
    prepare_tokenizer(tok, cfg.marker, entity_types(train_ds))
    lengths = np.asarray(featurize(train_ds, tok, cfg.marker, cfg.max_length, use_cache=False).lengths)
    batches = length_grouped_batches(lengths, cfg.batch_size, seed=cfg.seed)
    return float(sum(lengths[b].max() * len(b) for b in batches) / sum(len(b) for b in batches))


def relex_run(name: str, train_ds, valid_ds, backbone: str, *, steps: int, batch_size: int,
              lr: float, max_length: int, seed: int, workdir: Path, threads: int = 0,
              **cfg_kw) -> dict:
    from relex.config import TrialConfig
    from relex.train.fit import fit

    cfg_kw.setdefault("amp", "off")
    cfg = TrialConfig(backbone="relex/tiny", max_length=max_length, batch_size=batch_size, lr=lr,
                      max_steps=steps, epochs=10_000, eval_every=steps, warmup_ratio=0.1,
                      weight_decay=0.01, scheduler="linear", grad_clip=1.0, seed=seed,
                      eval_batch_size=128, num_threads=threads, **cfg_kw)
    cfg.validate()
    t0 = time.perf_counter()
    # a fresh feature cache: featurization counts in the end-to-end time, as tokenization does
    # for the baseline
    res = fit(cfg, train_ds, valid_ds, workdir / name.replace(" ", "_"), progress=False,
              backbone_path=backbone, features_cache=workdir / f"features-{name.replace(' ', '_')}")
    wall = time.perf_counter() - t0
    lengths = padded_tokens(train_ds, backbone, cfg)
    return {
        "name": name, "steps": res.steps, "train_s": res.train_s, "examples": res.examples_seen,
        "examples_per_s": res.examples_per_s, "micro_f1": res.best_metrics["micro_f1"],
        "auprc": res.best_metrics["auprc"], "wall_s": wall, "tokens_per_row": lengths,
        "stop_reason": res.stop_reason,
    }


def main(argv=None) -> int:
    p = C.parser(__doc__.split("\n\n")[0])
    p.add_argument("--train-rows", type=int, default=4000)
    p.add_argument("--valid-rows", type=int, default=1000)
    p.add_argument("--steps", type=int, default=375, help="optimizer steps (default: 3 epochs of 4000)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--max-length", type=int, default=256)
    p.add_argument("--seed", type=int, default=42)
    args = p.parse_args(argv)
    if args.quick:
        args.train_rows, args.valid_rows, args.steps = 800, 200, 30
    data = C.require_data(args.data)
    try:
        import accelerate  # noqa: F401
    except ImportError:
        print("error: the Hugging Face Trainer baseline needs `accelerate` (pip install accelerate)")
        return 2

    C.set_threads(args.threads)
    info = C.machine()
    C.print_machine(info)
    full = C.load_klue(data)
    train_ds, valid_ds = C.klue_subset(full, args.train_rows, args.valid_rows)
    del full
    backbone = C.tiny_backbone(train_ds)
    print(f"data: {len(train_ds)} train / {len(valid_ds)} valid rows of {data.name}; backbone {backbone}")
    print(f"{args.steps} optimizer steps, batch {args.batch_size}, lr {args.lr:g}, max_length {args.max_length}")

    from relex.train.amp import native_bf16

    bf16 = native_bf16("cpu")
    print(f"native bf16 on this CPU: {'yes' if bf16 else 'no'} "
          f"(best-flags HF and relex default run {'bf16' if bf16 else 'fp32'})")
    common = dict(steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                  max_length=args.max_length, seed=args.seed)
    rows = []
    with tempfile.TemporaryDirectory(prefix="relex-bench-") as tmp:
        tmp = Path(tmp)
        runs = [
            lambda: hf_baseline(train_ds, valid_ds, backbone, workdir=tmp, **common),
            lambda: hf_baseline(train_ds, valid_ds, backbone, workdir=tmp, best_flags=True, bf16=bf16,
                                **common),
            lambda: relex_run("relex typed+cls", train_ds, valid_ds, backbone, workdir=tmp,
                              threads=args.threads,
                              marker="typed_entity_marker", head="cls", **common),
            lambda: relex_run("relex default", train_ds, valid_ds, backbone, workdir=tmp,
                              threads=args.threads, amp="auto",
                              marker="typed_entity_marker_punct", head="marker", **common),
        ]
        for run in runs:
            gc.collect()
            r = run()
            rows.append(r)
            print(f"  {r['name']}: {r['examples_per_s']:.1f} examples/s, micro-F1 {r['micro_f1']:.2f}, "
                  f"train {r['train_s']:.1f}s, wall {r['wall_s']:.1f}s", flush=True)

    base, best = rows[0], rows[1]
    print()
    out_rows = []
    for r in rows:
        speed = r["examples_per_s"] / base["examples_per_s"]
        r["speedup"] = speed
        r["speedup_vs_best"] = r["examples_per_s"] / best["examples_per_s"]
        out_rows.append([r["name"], r["steps"], f"{r['tokens_per_row']:.0f}", r["examples_per_s"], f"{speed:.2f}x",
                         f"{r['speedup_vs_best']:.2f}x", r["micro_f1"], r["micro_f1"] - base["micro_f1"],
                         r["train_s"], r["wall_s"], base["wall_s"] / r["wall_s"]])
        r["wall_speedup"] = base["wall_s"] / r["wall_s"]
    print(C.table(out_rows, ["run", "steps", "tokens/row", "ex/s", "vs pad 256", "vs best flags", "micro-F1",
                             "ΔF1", "train s", "wall s", "wall vs pad 256"]))
    like, default = rows[2], rows[3]
    print(f"\ntarget: relex (typed+cls) ≥ {TARGET_SPEEDUP:g}x the pad-256 baseline's examples/s: "
          f"{like['speedup']:.2f}x -> {C.verdict(like['speedup'], TARGET_SPEEDUP, higher_is_better=True)}")
    print(f"target: relex micro-F1 ≥ pad-256 baseline: {like['micro_f1']:.2f} vs {base['micro_f1']:.2f} -> "
          f"{C.verdict(like['micro_f1'], base['micro_f1'], higher_is_better=True)}")
    print(f"target: relex default ≥ {TARGET_VS_BEST:g}x the best-flags baseline's examples/s: "
          f"{default['speedup_vs_best']:.2f}x -> "
          f"{C.verdict(default['speedup_vs_best'], TARGET_VS_BEST, higher_is_better=True)}")
    print(f"target: relex default micro-F1 ≥ best-flags baseline: {default['micro_f1']:.2f} vs "
          f"{best['micro_f1']:.2f} -> {C.verdict(default['micro_f1'], best['micro_f1'], higher_is_better=True)}")
    C.write_json(args.json, {"machine": info, "args": vars(args), "runs": rows,
                             "load_avg_1m_end": os.getloadavg()[0]})
    return 0


if __name__ == "__main__":
    sys.exit(main())
