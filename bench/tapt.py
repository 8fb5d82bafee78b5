"""Task-adaptive pretraining (relex pretrain) against the same tiny backbone from scratch.

Two evaluations of KLUE-RE train, both held out of the pretraining corpus (the corpus is the
KLUE-RE train sentences minus every sentence of either held-out set, so no held-out text has
been read, labelled or not):

* stratified: relex train's 10% stratified split (seed 42);
* shifted: the rows whose subject entity never occurs in the remaining training rows
  (``relex.data.split.unseen_subject_split``, 10%, seed 0), scored overall and by ``source``.

Stages, each appending JSON lines to ``--results`` (so they can run as separate processes)::

    bench/tapt.py pretrain  --work DIR --steps 400 --snapshots 100,200    # DIR/corpus.json, DIR/tapt (+ snapshots)
    bench/tapt.py finetune  --work DIR --backbone scratch|tapt|snapshot-N --split stratified|shifted --seeds 1,2,3
    bench/tapt.py report    --results FILE                                 # the tables of BENCHMARKS.md
    bench/tapt.py ship      --work DIR --backbone snapshot-N               # into the package, fp16

Fine-tuning is README's KLUE settings (lr 1e-3, batch 32, marker head, typed punct markers)
cut to ``--finetune-steps`` optimizer steps, the same for both backbones, evaluated once, at the
last step (no checkpoint selection on the held-out set).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from _common import load_klue, machine, parser, require_data, set_threads  # noqa: E402

STRATIFIED_SEED, SHIFTED_SEED, FRACTION = 42, 0, 0.1
SHIPPED = Path(__file__).resolve().parents[1] / "relex" / "model" / "pretrained" / "tiny-klue"


def splits(ds):
    """{name: (train Dataset, held-out Dataset)} and the pretraining corpus sentences."""
    from relex.data.split import split_indices, unseen_subject_split

    tr, va = split_indices(ds.label_ids(), FRACTION, STRATIFIED_SEED)
    str_, held, _ = unseen_subject_split(ds, FRACTION, SHIFTED_SEED)
    out = {"stratified": (ds.subset(tr), ds.subset(va)), "shifted": (ds.subset(str_), ds.subset(held))}
    held_sentences = set(ds.subset(va).frame["sentence"]) | set(ds.subset(held).frame["sentence"])
    return out, held_sentences


def cmd_pretrain(args, ds) -> None:
    from relex.config import PretrainConfig
    from relex.data.corpus import read_corpus
    from relex.train.pretrain import pretrain, read_info

    _, held = splits(ds)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    corpus_file = work / "corpus.json"  # KLUE-RE train without the held-out sentences
    rows = [r for r in json.loads(Path(args.data).read_text(encoding="utf-8")) if r["sentence"] not in held]
    if args.quick:
        rows = rows[::40]
    corpus_file.write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    corpus = read_corpus([corpus_file])
    cfg = PretrainConfig(steps=args.steps, save_every=args.save_every, num_threads=args.threads,
                         lr=args.pretrain_lr, batch_size=64)
    snapshots = {int(s) for s in args.snapshots.split(",") if s}
    out = work / "tapt"

    class Stop(Exception):
        """--stop-after: end the run at that evaluation (its directory and state are written)."""

    def keep_snapshot(m):
        if m["step"] in snapshots:
            dst = work / f"snapshot-{m['step']}"
            shutil.rmtree(dst, ignore_errors=True)
            shutil.copytree(out, dst, ignore=shutil.ignore_patterns("state"))
        if m["step"] == args.stop_after:
            raise Stop

    cpu0 = time.process_time()
    try:
        info = pretrain(cfg, corpus, out, progress="plain", on_evaluate=keep_snapshot)
    except Stop:
        info = read_info(out)
    _append(args.results, {"stage": "pretrain", "corpus_sentences": len(corpus),
                           "excluded_held_out_sentences": len(held), "info": info,
                           "cpu_s": time.process_time() - cpu0, "machine": machine()})


def cmd_finetune(args, ds) -> None:
    from relex import metrics as M
    from relex.config import TrialConfig
    from relex.train.fit import fit

    parts, _ = splits(ds)
    train_ds, held_ds = parts[args.split]
    work = Path(args.work)
    backbone = "relex/tiny" if args.backbone == "scratch" else str(work / args.backbone)
    for seed in [int(s) for s in args.seeds.split(",")]:
        cfg = TrialConfig(backbone=backbone, lr=1e-3, batch_size=32, epochs=2,
                          max_steps=args.finetune_steps, eval_every=args.finetune_steps,
                          seed=seed, num_threads=args.threads)
        out = work / "runs" / f"{args.backbone}-{args.split}-{seed}"
        cpu0, t0 = time.process_time(), time.perf_counter()
        res = fit(cfg, train_ds, held_ds, out, progress="plain")
        labels = held_ds.label_ids()
        sources = held_ds.frame["source"].to_numpy()
        by_source = {}
        for src in sorted(set(sources)):
            rows = sources == src
            m = M.compute(labels[rows], res.valid_probs[rows], held_ds.labels.names,
                          held_ds.labels.negative, per_class=False)
            by_source[src] = {"n": int(rows.sum()), "micro_f1": m["micro_f1"], "mean_ap": m["mean_ap"]}
        _append(args.results, {"stage": "finetune", "backbone": args.backbone, "split": args.split,
                               "seed": seed, "steps": res.steps, "train_rows": len(train_ds),
                               "held_out_rows": len(held_ds), "metrics": res.best_metrics,
                               "by_source": by_source, "wall_s": time.perf_counter() - t0,
                               "cpu_s": time.process_time() - cpu0})
        shutil.rmtree(out / "best", ignore_errors=True)  # only the figures are needed


def cmd_ship(args) -> None:
    """Copy a pretrained directory into the package as relex/tiny-klue, weights in fp16."""
    from safetensors.torch import load_file, save_file

    src, dst = Path(args.work) / args.backbone, SHIPPED
    dst.mkdir(parents=True, exist_ok=True)
    for name in ("tokenizer.json", "tokenizer_config.json", "relex_pretrain.json", "config.json"):
        shutil.copyfile(src / name, dst / name)
    weights = {k: v.half() if v.is_floating_point() else v for k, v in load_file(str(src / "model.safetensors")).items()}
    save_file(weights, str(dst / "model.safetensors"), metadata={"format": "pt"})
    os.chmod(dst / "model.safetensors", 0o644)  # safetensors writes it owner-only
    config = json.loads((dst / "config.json").read_text())
    for k in ("dtype", "torch_dtype"):
        if k in config:
            config[k] = "float16"
    (dst / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    print(f"shipped {src} -> {dst}: {sum(p.stat().st_size for p in dst.iterdir()) / 1e6:.2f} MB")


def _append(path: str, record: dict) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)) + "\n")
        f.flush()
        os.fsync(f.fileno())


# ----------------------------------------------------------------------------- report
def interval(values) -> tuple[float, float, float]:
    """Mean and its 95% t-interval."""
    from scipy import stats

    v = np.asarray(values, dtype=float)
    if len(v) < 2:
        return float(v.mean()), float("nan"), float("nan")
    half = stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v))
    return float(v.mean()), float(v.mean() - half), float(v.mean() + half)


def fmt(values) -> str:
    m, lo, hi = interval(values)
    return f"{m:.2f} [{lo:.2f}, {hi:.2f}]" if np.isfinite(lo) else f"{m:.2f}"


def cmd_report(args) -> None:
    recs = [json.loads(line) for line in Path(args.results).read_text().splitlines() if line.strip()]
    runs = [r for r in recs if r["stage"] == "finetune"]
    for r in recs:
        if r["stage"] == "pretrain":
            i = r["info"]
            print(f"pretraining: {i['steps']} steps, {i['tokens']:,} tokens, {r['corpus_sentences']} "
                  f"sentences ({r['excluded_held_out_sentences']} held-out sentences excluded); "
                  f"{i['wall_s'] / 60:.1f} min wall, {r['cpu_s'] / 60:.1f} CPU-min, "
                  f"{i['tokens_per_s']:,.0f} tokens/s; held-out MLM loss {i['held_out']['mlm_loss']:.3f}, "
                  f"accuracy {i['held_out']['mlm_accuracy']:.2f}%; load(1m) at start "
                  f"{r['machine']['load_avg_1m']}")
    arms = sorted({r["backbone"] for r in runs if r["backbone"] != "scratch"}, key=lambda b: _steps(b, recs))
    print("\n| split | metric | pretrained | steps | from scratch | pretrained | Δ (paired by seed) | seeds |"
          "\n|---|---|---|---|---|---|---|---|")
    for split in ("stratified", "shifted"):
        for metric in ("micro_f1", "mean_ap"):
            a = _by_seed(runs, split, "scratch", metric)
            for arm in arms:
                b = _by_seed(runs, split, arm, metric)
                both = sorted(set(a) & set(b))
                if both:
                    print(f"| {split} | {metric} | {arm} | {_steps(arm, recs)} | {fmt([a[s] for s in both])} | "
                          f"{fmt([b[s] for s in both])} | {fmt([b[s] - a[s] for s in both])} | {len(both)} |")
    print("\nshifted split by source (micro-F1, mean over seeds):")
    for bb in ("scratch", *arms):
        rs = [r for r in runs if r["split"] == "shifted" and r["backbone"] == bb]
        if rs:
            srcs = sorted(rs[0]["by_source"])
            print(f"  {bb}: " + ", ".join(
                f"{s} (n={rs[0]['by_source'][s]['n']}) {np.mean([r['by_source'][s]['micro_f1'] for r in rs]):.2f}"
                for s in srcs))
    print("\ncurve (shifted split): pretraining steps → micro-F1 / mean AP, mean [95% interval] over seeds")
    for bb in ("scratch", *arms):
        f1, ap = _by_seed(runs, "shifted", bb, "micro_f1"), _by_seed(runs, "shifted", bb, "mean_ap")
        if f1:
            print(f"  {_steps(bb, recs):>6}  {fmt(list(f1.values()))} / {fmt(list(ap.values()))}  "
                  f"(seeds {', '.join(map(str, sorted(f1)))})")
    walls = [r["cpu_s"] for r in runs]
    if walls:
        print(f"\nfine-tuning: {runs[0]['steps']} steps per run, {np.mean(walls) / 60:.1f} CPU-min per run")


def _by_seed(runs, split: str, backbone: str, metric: str) -> dict[int, float]:
    return {r["seed"]: r["metrics"][metric] for r in runs
            if r["split"] == split and r["backbone"] == backbone and r["steps"] == runs[0]["steps"]}


def _steps(backbone: str, recs) -> int:
    if backbone == "scratch":
        return 0
    if backbone.startswith("snapshot-"):
        return int(backbone.split("-")[1])
    return max((r["info"]["steps"] for r in recs if r["stage"] == "pretrain"), default=-1)


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("stage", choices=("pretrain", "finetune", "report", "ship"))
    p.add_argument("--work", default="artifacts/bench-tapt")
    p.add_argument("--results", default="artifacts/bench-tapt/results.jsonl")
    p.add_argument("--steps", type=int, default=400, help="pretraining steps")
    p.add_argument("--save-every", type=int, default=100)
    p.add_argument("--snapshots", default="100,200", help="pretraining steps to keep copies of")
    p.add_argument("--pretrain-lr", type=float, default=1e-3)
    p.add_argument("--stop-after", type=int, default=0, help="end pretraining at this step")
    p.add_argument("--backbone", default="scratch", help="scratch, tapt or snapshot-N")
    p.add_argument("--split", default="shifted", choices=("stratified", "shifted"))
    p.add_argument("--seeds", default="1,2,3")
    p.add_argument("--finetune-steps", type=int, default=300)
    args = p.parse_args()
    if args.stage == "report":
        return cmd_report(args)
    if args.stage == "ship":
        return cmd_ship(args)
    if args.quick:
        args.steps, args.save_every, args.snapshots, args.finetune_steps, args.seeds = 6, 3, "3", 4, "1"
    set_threads(args.threads)
    os.makedirs(Path(args.results).parent, exist_ok=True)
    ds = load_klue(require_data(args.data))
    if args.quick:
        ds = ds.subset(np.arange(0, len(ds), 40))
    {"pretrain": cmd_pretrain, "finetune": cmd_finetune}[args.stage](args, ds)


if __name__ == "__main__":
    main()
