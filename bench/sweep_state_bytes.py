"""Benchmark 8b: bytes a sweep trial writes per evaluation, with the resumable state written once
on the sweep's storage and Ray Tune's checkpoint pointing to it, against the previous sweep
trial (state written to a temporary directory, then copied whole by Ray Tune), in the same run.

Both sides run the same one-trial sweep through ``relex sweep`` (a local Ray), each from its own
tree (``PYTHONPATH``; the previous one from a git worktree of ``--old``). The model is
benchmark 8's randomly initialised ``roberta-base``-shaped encoder (hidden 768, 12 layers,
vocabulary 32,000) with the tiny backbone's tokenizer; a few steps, an evaluation every
``--eval-every`` steps, ``checkpoint_every=1``. The job's ``before_trial`` hook wraps
``tune.report`` in the trial's worker process and records that process's written bytes
(``/proc/self/io`` ``wchar``) after every report: the state, ``best/`` when it improves, and
Ray Tune's copy of the checkpoint all happen in that process.

    .venv/bin/python bench/sweep_state_bytes.py [--old COMMIT] [--steps 6] [--eval-every 2] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from checkpoint_bytes import ROOT, base_shaped_backbone, old_tree

OLD_DEFAULT = "8238942"  # the last commit whose sweep trials gave Ray Tune the whole state

JOB = '''
import json, os
from relex.sweep import Sweep

def meter(cfg, trial_id):
    # after every report: the bytes this worker process has written so far
    from ray import tune
    real = tune.report
    def report(metrics, checkpoint=None):
        real(metrics, checkpoint=checkpoint)
        io = dict(ln.split(":") for ln in open("/proc/self/io").read().splitlines())
        with open({marks!r}, "a") as fh:
            fh.write(json.dumps({{"step": metrics.get("step"), "is_best": metrics.get("is_best"),
                                 "wchar": int(io["wchar"])}}) + "\\n")
    tune.report = report
    with open({marks!r}, "a") as fh:  # the start: bytes written before training
        io = dict(ln.split(":") for ln in open("/proc/self/io").read().splitlines())
        fh.write(json.dumps({{"step": 0, "is_best": None, "wchar": int(io["wchar"])}}) + "\\n")

sweep = Sweep(name="bytes", train={data!r}, valid=0.2, seeds=[0],
              space=dict(backbone={backbone!r}, batch_size=8, eval_batch_size=64, max_length=64,
                         max_steps={steps}, eval_every={eval_every}, epochs=50, warmup_ratio=0.0,
                         lr=1e-4, num_threads=1, amp="off", checkpoint_every=1),
              asha=dict(grace_period=1000), resources=dict(gpu=0, cpu=1), before_trial=meter)
'''


def run_side(side: str, tree: Path, backbone: str, tmp: Path, steps: int, eval_every: int) -> dict:
    from relex.data.sample import SAMPLE_PATH

    work = tmp / side
    work.mkdir()
    marks = work / "marks.jsonl"
    job = work / "job.py"
    job.write_text(JOB.format(marks=str(marks), data=str(SAMPLE_PATH), backbone=backbone,
                              steps=steps, eval_every=eval_every))
    env = {**os.environ, "PYTHONPATH": str(tree), "TOKENIZERS_PARALLELISM": "false",
           "RELEX_CACHE": str(tmp / "cache"), "RAY_USAGE_STATS_ENABLED": "0"}
    proc = subprocess.run([sys.executable, "-m", "relex.cli", "sweep", str(job), "--storage",
                           str(work / "art")], env=env, cwd=tree, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"{side} side failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    rows = [json.loads(x) for x in marks.read_text().splitlines()]
    start, evals = rows[0]["wchar"], rows[1:]
    per_eval = [r["wchar"] - p["wchar"] for p, r in zip(rows, evals)]
    return {"per_evaluation": per_eval, "is_best": [r["is_best"] for r in evals],
            "total_bytes": evals[-1]["wchar"] - start}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--old", default=OLD_DEFAULT, help="commit of the previous sweep trial (default %(default)s)")
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--eval-every", type=int, default=2)
    p.add_argument("--json", metavar="FILE")
    args = p.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    results: dict = {"old_commit": args.old}
    with tempfile.TemporaryDirectory(prefix="relex-bench-sweep-bytes-") as tmpdir:
        tmp = Path(tmpdir)
        tree = old_tree(args.old, tmp)
        try:
            backbone = base_shaped_backbone(tmp)
            for side, where in (("old", tree), ("new", ROOT)):
                r = results[side] = run_side(side, where, backbone, tmp, args.steps, args.eval_every)
                print(f"{side}: {r['total_bytes'] / 1e6:,.0f} MB in {len(r['per_evaluation'])} evaluations; "
                      f"per evaluation {', '.join(f'{d / 1e6:,.0f}' for d in r['per_evaluation'])} MB "
                      f"(best improved: {r['is_best']})", flush=True)
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], check=False)
    old, new = results["old"], results["new"]
    print(f"per trial: old {old['total_bytes'] / 1e6:,.0f} MB, new {new['total_bytes'] / 1e6:,.0f} MB "
          f"({new['total_bytes'] / old['total_bytes']:.2f}x)")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
