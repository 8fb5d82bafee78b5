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
    hf, rx = report["hf"], report["relex"]
    assert hf["examples_per_s"] > 0 and rx["examples_per_s"] > 0
    assert report["ratio"] == pytest.approx(rx["examples_per_s"] / hf["examples_per_s"])
    assert f"relex / best-flags HF Trainer: {report['ratio']:.2f}x examples/s" in proc.stdout
    assert report["flops_per_example"] > 0 and report["mfu"] is None  # no known peak for a CPU
    assert set(report["breakdown_ms"]) == {"data", "forward", "backward", "optimizer"}
    assert all(v > 0 for v in report["breakdown_ms"].values())
    packing = report["packing"]
    assert [p["trials"] for p in packing] == [1, 2]
    assert all(p["examples_per_s"] > 0 and p["trials_per_hour"] > 0 for p in packing)
    # one run on 1 and 2 gloo workers: the same steps, twice the examples per step
    scaling = report["scaling"]
    assert [r["workers"] for r in scaling] == [1, 2]
    assert scaling[1]["global_batch"] == 2 * scaling[0]["global_batch"]
    assert all(r["steps"] == 8 and r["examples_per_s"] > 0 for r in scaling)
