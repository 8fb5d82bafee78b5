"""bench/gpu.py runs end to end on the CPU (``--device cpu --quick``): the same code paths a GPU
machine runs — relex against the best-flags Hugging Face Trainer, MFU, the step-time breakdown,
trials sharing one device — so the GPU benchmark never ships unexecuted. Figures from a CPU run
are not quoted anywhere; this checks that each part is measured and consistent."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from relex.data.sample import SAMPLE_PATH

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


@pytest.mark.skipif(importlib.util.find_spec("accelerate") is None,
                    reason="the HF Trainer baseline needs accelerate: pip install -e '.[bench]'")
def test_gpu_benchmark_runs_on_the_cpu(tmp_path):
    out = tmp_path / "gpu.json"
    env = {**os.environ, "RELEX_CACHE": str(tmp_path / "cache"), "TOKENIZERS_PARALLELISM": "false",
           "RAY_USAGE_STATS_ENABLED": "0"}
    # --data at a missing file: the bundled sample, so the check needs no shared data
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu.py"), "--device", "cpu", "--quick",
                           "--data", str(tmp_path / "absent.json"), "--json", str(out)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["device"] == "cpu"
    args = report["args"]
    hf, rx = report["hf"], report["relex"]
    # both sides trained the steps asked for, and the rates are those runs' (relex's
    # length-grouped batches may end an epoch short of a full batch; the Trainer's are full)
    assert hf["steps"] == rx["steps"] == args["steps"] == 8
    assert hf["examples"] == 8 * args["batch_size"] and 0 < rx["examples"] <= 8 * args["batch_size"]
    for run in (hf, rx):
        assert run["examples_per_s"] == pytest.approx(run["examples"] / run["train_s"])
        assert 0 <= run["micro_f1"] <= 100
    assert report["ratio"] == pytest.approx(rx["examples_per_s"] / hf["examples_per_s"])
    assert f"relex / best-flags HF Trainer: {report['ratio']:.2f}x examples/s" in proc.stdout
    # MFU's FLOPs are the formula's for the quick backbone (hidden 64, 2 layers, FFN 4 x 64)
    d, layers, tokens = 64, 2, report["tokens_per_row"]
    assert 1 <= tokens <= args["max_length"]
    n = layers * (4 * d * d + 2 * d * 4 * d)
    assert report["flops_per_example"] == pytest.approx(6 * n * tokens + 12 * layers * tokens ** 2 * d)
    assert report["achieved_tflops"] == pytest.approx(report["flops_per_example"] * rx["examples_per_s"] / 1e12)
    assert report["mfu"] is None  # no known peak for a CPU
    assert set(report["breakdown_ms"]) == {"data", "forward", "backward", "optimizer"}
    assert all(v > 0 for v in report["breakdown_ms"].values())
    # packing: k workers each measured, the total their sum, trials/hour that total over a trial
    packing = report["packing"]
    assert [p["trials"] for p in packing] == [1, 2]
    for p in packing:
        assert len(p["per_trial_examples_per_s"]) == p["trials"]
        assert all(x > 0 for x in p["per_trial_examples_per_s"])
        assert p["examples_per_s"] == pytest.approx(sum(p["per_trial_examples_per_s"]))
        # a trial: trial_epochs over the training rows (the bundled sample less the validation rows)
        sample_rows = len(json.loads(SAMPLE_PATH.read_text(encoding="utf-8")))
        trial_examples = args["trial_epochs"] * (sample_rows - args["valid_rows"])
        assert p["trials_per_hour"] == pytest.approx(3600 * p["examples_per_s"] / trial_examples)
    # one run on 1 and 2 gloo workers: the same steps, twice the examples per step
    scaling = report["scaling"]
    assert [r["workers"] for r in scaling] == [1, 2]
    assert scaling[1]["global_batch"] == 2 * scaling[0]["global_batch"]
    assert all(r["steps"] == 8 and r["examples_per_s"] > 0 for r in scaling)
