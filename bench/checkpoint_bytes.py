"""Benchmark 6: bytes a training run writes per evaluation and per trial, and training
throughput, against the previous trainer measured in the same run.

The previous trainer (``relex/train/loop.py``, before the step/state/fit rebuild) runs from a
git worktree of the commit given by ``--old`` (default: the last commit before the rebuild);
the current one from this checkout. Each side runs in its own process (``PYTHONPATH`` set to
its tree) and counts the bytes it writes with ``/proc/self/io`` (``wchar``: every byte passed
to write(), whatever the file).

Bytes: a randomly initialised ``roberta-base``-shaped encoder (hidden 768, 12 layers, 12
heads, vocabulary 32,000: ``klue/roberta-base``'s shape, no weights downloaded) with the tiny
backbone's tokenizer, on CPU, on the bundled sample; a few steps, an evaluation every
``--eval-every`` steps. The previous trainer keeps a resumable state after every evaluation
the way a sweep trial did (``ev.save_state``: weights, optimizer, and a copy of ``best/``);
the current one writes its state every ``checkpoint_every`` evaluations (the default unless
``--checkpoint-every``) and refers to ``best/``. Both write ``best/`` when it improves. (A sweep
trial's copy by Ray Tune: see bench/sweep_state_bytes.py.)

Throughput: the tiny default backbone (128×2), the same rows, interleaved rounds
old/new/old/new…; training examples per second of ``fit`` (evaluation excluded), ratio of the
medians.

    .venv/bin/python bench/checkpoint_bytes.py [--quick] [--old COMMIT] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OLD_DEFAULT = "6baac9c"  # the last commit with relex/train/loop.py
BASE_SHAPE = dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
                  vocab_size=32000)


def wchar() -> int:
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("wchar:"):
            return int(line.split()[1])
    raise RuntimeError("no wchar in /proc/self/io")


# ----------------------------------------------------------------------------- child side
def child(args) -> None:
    """Runs inside one tree (PYTHONPATH): one measurement, JSON on stdout's last line."""
    import torch

    from relex.config import TrialConfig
    from relex.data import read_dataset, stratified_split
    from relex.data.sample import SAMPLE_PATH

    torch.set_num_threads(1)
    ds = read_dataset(SAMPLE_PATH)
    train, valid = stratified_split(ds, 0.2, seed=0)
    old = args.side == "old"
    if old:
        from relex.train.loop import fit
    else:
        from relex.train.fit import fit
    out = Path(args.workdir) / args.side
    cfg = json.loads(args.config)
    if not old and args.checkpoint_every:
        cfg["checkpoint_every"] = args.checkpoint_every
    cfg = TrialConfig(**cfg)
    marks: list[dict] = []
    start = wchar()

    def on_evaluate(ev) -> None:
        if old and args.states:
            ev.save_state(out / "state")  # what a sweep trial did after every evaluation
        marks.append({"step": ev.step, "is_best": ev.is_best, "wchar": wchar() - start})

    kw = {"state_dir": out / "state"} if (not old and args.states) else {}
    res = fit(cfg, train, valid, out, progress=False, on_evaluate=on_evaluate,
              backbone_path=args.backbone, features_cache=Path(args.workdir) / "features", **kw)
    total = wchar() - start
    print(json.dumps({"marks": marks, "total": total, "examples_per_s": res.examples_per_s,
                      "steps": res.steps}))


def run_side(side: str, tree: Path, backbone: str, config: dict, workdir: Path, *, states: bool,
             checkpoint_every: int = 0) -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree), "TOKENIZERS_PARALLELISM": "false"}
    cmd = [sys.executable, __file__, "--child", side, "--backbone", backbone, "--workdir", str(workdir),
           "--config", json.dumps(config), "--checkpoint-every", str(checkpoint_every)]
    if states:
        cmd.append("--states")
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=tree)
    if proc.returncode:
        raise SystemExit(f"{side} side failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- parent side
def base_shaped_backbone(tmp: Path) -> str:
    """The tiny backbone's tokenizer beside a randomly initialised roberta-base-shaped encoder."""
    import torch
    from transformers import AutoTokenizer, RobertaConfig, RobertaModel

    from relex.model.backbone import resolve_backbone

    tiny = resolve_backbone("relex/tiny")
    tok = AutoTokenizer.from_pretrained(tiny)
    target = tmp / "roberta-base-shaped"
    tok.save_pretrained(str(target))
    config = RobertaConfig(**BASE_SHAPE, max_position_embeddings=514, type_vocab_size=1,
                           pad_token_id=tok.pad_token_id, bos_token_id=tok.cls_token_id,
                           eos_token_id=tok.sep_token_id)
    torch.manual_seed(0)
    RobertaModel(config).save_pretrained(str(target))
    return str(target)


def old_tree(commit: str, tmp: Path) -> Path:
    path = tmp / "old-tree"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(path), commit], check=True)
    return path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--child", choices=["old", "new"], help=argparse.SUPPRESS)
    p.add_argument("--backbone", help=argparse.SUPPRESS)
    p.add_argument("--workdir", help=argparse.SUPPRESS)
    p.add_argument("--config", help=argparse.SUPPRESS)
    p.add_argument("--states", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--old", default=OLD_DEFAULT, help="commit of the previous trainer (default %(default)s)")
    p.add_argument("--checkpoint-every", type=int, default=0,
                   help="the current trainer's checkpoint_every (default: TrialConfig's default)")
    p.add_argument("--steps", type=int, default=6, help="optimizer steps of the bytes runs")
    p.add_argument("--eval-every", type=int, default=2)
    p.add_argument("--rounds", type=int, default=3, help="throughput rounds per side")
    p.add_argument("--quick", action="store_true", help="a tiny encoder instead of base-sized")
    p.add_argument("--json", metavar="FILE")
    args = p.parse_args(argv)
    if args.child:
        args.side = args.child
        child(args)
        return 0
    sys.path.insert(0, str(ROOT))
    from relex.config import TrialConfig

    if args.quick:
        BASE_SHAPE.update(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128)
        args.rounds = 1
    every = args.checkpoint_every or TrialConfig().checkpoint_every
    results: dict = {"checkpoint_every": every, "old_commit": args.old, "shape": BASE_SHAPE}
    with tempfile.TemporaryDirectory(prefix="relex-bench-bytes-") as tmpdir:
        tmp = Path(tmpdir)
        tree = old_tree(args.old, tmp)
        try:
            backbone = base_shaped_backbone(tmp)
            cfg = dict(batch_size=8, eval_batch_size=64, max_length=64, max_steps=args.steps,
                       eval_every=args.eval_every, warmup_ratio=0.0, lr=1e-4, num_threads=1, amp="off")
            for side, where in (("old", tree), ("new", ROOT)):
                r = run_side(side, where, backbone, cfg, tmp / f"bytes-{side}", states=True,
                             checkpoint_every=args.checkpoint_every)
                deltas = [m["wchar"] - (r["marks"][i - 1]["wchar"] if i else 0)
                          for i, m in enumerate(r["marks"])]
                results[side] = {"total_bytes": r["total"], "evaluations": len(r["marks"]),
                                 "per_evaluation": deltas, "is_best": [m["is_best"] for m in r["marks"]]}
                print(f"{side}: {r['total'] / 1e6:,.0f} MB written in {len(r['marks'])} evaluations; per "
                      f"evaluation {', '.join(f'{d / 1e6:,.0f}' for d in deltas)} MB (best improved: "
                      f"{[m['is_best'] for m in r['marks']]})", flush=True)
            tiny = TrialConfig()
            tcfg = dict(batch_size=32, max_length=128, max_steps=40, epochs=1, num_threads=1, amp="off",
                        eval_batch_size=128)
            speed: dict[str, list[float]] = {"old": [], "new": []}
            from relex.model.backbone import resolve_backbone

            tiny_dir = resolve_backbone("relex/tiny", cfg=tiny)
            for i in range(args.rounds):
                for side, where in (("old", tree), ("new", ROOT)):
                    r = run_side(side, where, tiny_dir, tcfg, tmp / f"speed-{side}-{i}", states=False)
                    speed[side].append(r["examples_per_s"])
            med = {k: statistics.median(v) for k, v in speed.items()}
            results["throughput"] = {"examples_per_s": speed, "ratio_new_to_old": med["new"] / med["old"]}
            print(f"throughput (tiny 128x2, examples/s): old {speed['old']}, new {speed['new']}; "
                  f"new/old = {med['new'] / med['old']:.3f}")
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], check=False)
    old, new = results["old"], results["new"]
    print(f"per trial: old {old['total_bytes'] / 1e6:,.0f} MB, new {new['total_bytes'] / 1e6:,.0f} MB "
          f"({new['total_bytes'] / old['total_bytes']:.2f}x) over {old['evaluations']} evaluations, "
          f"checkpoint_every={every}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
