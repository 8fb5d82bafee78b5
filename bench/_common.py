"""Shared helpers of the benchmarks: the KLUE-RE data, the tiny backbone, machine facts, output.

Every benchmark takes ``--data`` (default: the shared KLUE-RE training file) and exits 0 with a
message when the file is absent, so ``make`` targets and CI never fail for want of data.
Figures that matter are RATIOS against a baseline measured in the same process, right before or
interleaved with the measured code: absolute seconds depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "klue-re" / "klue-re-v1.1_train.json"
if not DEFAULT_DATA.exists():  # the repository checked out elsewhere: the usual shared location
    DEFAULT_DATA = Path("/work/shared/data/klue-re/klue-re-v1.1_train.json")


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(DEFAULT_DATA),
                   help="KLUE-RE training file (KLUE JSON); default: %(default)s")
    p.add_argument("--quick", action="store_true", help="small sizes: checks the script runs")
    p.add_argument("--json", metavar="FILE", help="also write the figures as JSON to FILE")
    p.add_argument("--threads", type=int, default=1,
                   help="torch intra-op threads for every side (default 1: on a shared 2-core "
                        "machine two OpenMP threads spin against other processes and the "
                        "figures become noise; 0 = torch's default)")
    return p


def set_threads(n: int) -> None:
    import torch

    if n > 0:
        torch.set_num_threads(n)


def require_data(path: str) -> Path:
    p = Path(path)
    if not p.is_file():
        print(f"skipped: KLUE-RE data not found at {p} (pass --data FILE)")
        sys.exit(0)
    return p


def labels_file(data: Path) -> str | None:
    rel = data.parent / "relation_list.json"
    return str(rel) if rel.is_file() else None


def machine() -> dict[str, Any]:
    import torch

    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        model = platform.processor()
    try:
        import transformers

        tv = transformers.__version__
    except ImportError:
        tv = "-"
    return {
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": os.cpu_count(),
        "cpu": model,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "transformers": tv,
        "python": platform.python_version(),
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }


def print_machine(info: dict[str, Any]) -> None:
    print(f"# {info['date']}  nproc={info['nproc']}  cpu={info['cpu']!r}  torch={info['torch']} "
          f"(threads {info['torch_threads']})  transformers={info['transformers']}  "
          f"load(1m) at start={info['load_avg_1m']}")


def load_klue(data: Path):
    from relex.data import read_dataset

    return read_dataset(str(data), labels=labels_file(data))


def klue_subset(ds, n_train: int, n_valid: int, seed: int = 0):
    """A fixed, stratified (train, valid) pair of ``n_train`` + ``n_valid`` rows of ``ds``."""
    from relex.data.split import split_indices

    n = len(ds)
    total = n_train + n_valid
    if total < n:
        _, keep = split_indices(ds.label_ids(), total / n, seed)
        ds = ds.subset(keep[:total])
    tr, va = split_indices(ds.label_ids(), n_valid / len(ds), seed)
    return ds.subset(tr[:n_train]), ds.subset(va[:n_valid])


def tiny_backbone(train_ds, cfg=None) -> str:
    """The tiny backbone, its tokenizer trained on the training sentences (cached)."""
    from relex.model.backbone import resolve_backbone

    return resolve_backbone("relex/tiny", corpus=train_ds.frame["sentence"].tolist(), cfg=cfg)


class Timer:
    def __enter__(self):
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.s = time.perf_counter() - self.t0


def table(rows: list[list[Any]], header: list[str]) -> str:
    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.3g}" if abs(v) < 100 else f"{v:.1f}"
        return str(v)

    cells = [[fmt(c) for c in r] for r in [header, *rows]]
    w = [max(len(r[i]) for r in cells) for i in range(len(header))]
    out = ["  ".join(c.ljust(w[i]) for i, c in enumerate(r)).rstrip() for r in cells]
    out.insert(1, "  ".join("-" * x for x in w))
    return "\n".join(out)


def write_json(path: str | None, payload: dict[str, Any]) -> None:
    if path:
        Path(path).write_text(json.dumps(payload, indent=1, default=str) + "\n", encoding="utf-8")
        print(f"wrote {path}")


def verdict(value: float, target: float, *, higher_is_better: bool) -> str:
    ok = value >= target if higher_is_better else value <= target
    return "met" if ok else "NOT met"


def write_klue_subset(data: Path, n_rows: int, out: Path, seed: int = 0) -> Path:
    """Write a stratified sample of ``n_rows`` records of a KLUE JSON file to ``out`` (KLUE JSON)."""
    import numpy as np

    from relex.data.split import split_indices

    records = json.loads(Path(data).read_text(encoding="utf-8"))
    if n_rows < len(records):
        _, y = np.unique([r["label"] for r in records], return_inverse=True)
        _, keep = split_indices(y, n_rows / len(records), seed)
        records = [records[i] for i in keep[:n_rows]]
    out.write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
    return out


def sweep_job_text(*, name: str, train: Path, labels: str | None, valid: float, space: str,
                   asha: str, max_concurrent: int) -> str:
    """A job file (Python source) for ``relex.sweep``; ``space``/``asha`` are Python dict sources."""
    return (
        "from relex.sweep import Sweep, grid\n"
        f"sweep = Sweep(name={name!r}, train={str(train)!r}, valid={valid!r},\n"
        f"              labels={labels!r}, space={space},\n"
        f"              seeds=[42], asha={asha}, resources=dict(gpu=0, cpu=1),\n"
        f"              max_concurrent={max_concurrent}, max_failures=0, reuse_actors=True)\n"
    )


def run_sweep(job_file: Path, storage: Path, *, prepared_dir: Path | None = None) -> dict[str, Any]:
    """Load and run a job through relex's runner; times the pre-flight and the Ray part apart.

    Returns the outcome, the seconds of each part and the sweep's trials/history tables.
    """
    from relex.sweep.job import load_job
    from relex.sweep.runner import preflight, run

    job = load_job(job_file)
    t0 = time.perf_counter()
    pre_dir = prepared_dir or (storage / f".preflight-{job.name}")
    pre_dir.mkdir(parents=True, exist_ok=True)
    prepared, _ = preflight(job, pre_dir)
    t1 = time.perf_counter()
    # Ray is started here with address="local", exactly as the runner would start it but never
    # joining another Ray instance running on the machine (ray.init() without an address
    # attaches to any running one); the start and the shutdown are inside the timed part.
    import ray

    ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False,
             log_to_driver=False, configure_logging=True, logging_level="WARNING")
    try:
        outcome = run(job, storage=storage, prepared=prepared, live=False)
    finally:
        ray.shutdown()
    t2 = time.perf_counter()
    from relex.sweep.layout import SweepDir

    sweep = SweepDir(outcome.sweep_dir)
    sweep_dir, trials, history = sweep.path, sweep.trials(), sweep.history()
    return {"job": job, "outcome": outcome, "preflight_s": t1 - t0, "run_s": t2 - t1,
            "trials": trials, "history": history, "sweep_dir": sweep_dir}


def write_dataset_json(ds, out: Path) -> Path:
    """Write a relex Dataset as KLUE JSON (what ``read_dataset`` reads back)."""
    rows = [{"guid": r.id, "sentence": r.sentence, "label": r.label, "source": r.source,
             "subject_entity": {"word": r.subj_word, "start_idx": int(r.subj_start),
                                "end_idx": int(r.subj_end), "type": r.subj_type},
             "object_entity": {"word": r.obj_word, "start_idx": int(r.obj_start),
                               "end_idx": int(r.obj_end), "type": r.obj_type}}
            for r in ds.frame.itertuples(index=False)]
    out.write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    return out
