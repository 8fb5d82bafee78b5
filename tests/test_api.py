"""relex.load / predict on records, `relex evaluate|predict RUN_DIR`, and `relex export --onnx`."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import relex
from relex.api import RecordError, klue_record
from test_train_cli import cli

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--tiny-hidden", "32", "--tiny-layers", "1", "--max-length", "80", "--batch-size", "32",
        "--lr", "5e-3", "--warmup-ratio", "0", "--num-threads", "1", "--epochs", "1", "--quiet"]


def _train(out: Path, *extra: str) -> Path:
    from relex.cli import main

    assert main(["train", "--out", str(out), *FAST, *extra]) == 0
    return out


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, session_cache):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RELEX_CACHE", str(session_cache))
        return _train(tmp_path_factory.mktemp("api") / "run")


@pytest.fixture(scope="module")
def erpe_run_dir(tmp_path_factory, session_cache):
    """An untyped marker style, the R-BERT head and ERPE: the other paths of records and export."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RELEX_CACHE", str(session_cache))
        return _train(tmp_path_factory.mktemp("api") / "erpe", "--marker", "entity_marker_punct",
                      "--head", "rbert", "--erpe")


@pytest.fixture(scope="module")
def sample():
    from relex.data.sample import SAMPLE_PATH

    return json.loads(Path(SAMPLE_PATH).read_text(encoding="utf-8"))


def opennre(rec: dict, *, typed: bool = True) -> dict:
    """The OpenNRE form of a KLUE record (end exclusive)."""
    def ent(e):
        d = {"pos": [e["start_idx"], e["end_idx"] + 1], "name": e["word"]}
        if typed:
            d["type"] = e["type"]
        return d
    return {"text": rec["sentence"], "h": ent(rec["subject_entity"]), "t": ent(rec["object_entity"])}


def test_load_run_dir_uses_best_and_matches_the_file_path(run_dir, sample):
    from relex.data import read_dataset
    from relex.data.sample import SAMPLE_PATH

    by_run, by_ckpt = relex.load(run_dir), relex.load(run_dir / "best")
    assert by_run.path == run_dir / "best"
    records = sample[:40]
    preds = by_run.predict(records)
    assert [p.distribution for p in preds] == [p.distribution for p in by_ckpt.predict(records)]

    def table(ps):
        return np.array([[p.distribution[n] for n in by_run.label_names] for p in ps])

    # other batch compositions pad differently: equal up to float rounding
    got = table(preds)
    np.testing.assert_allclose(table(by_run.predict(records, batch_size=7)), got, rtol=0, atol=1e-6)
    # the same probabilities as the file path of `relex predict` (featurized from the file)
    ds = read_dataset(SAMPLE_PATH, labels=by_run.labels(), require_labels=False)
    want = by_run.predict_proba(ds)[:40]
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
    for p, row in zip(preds, want):
        assert list(p.distribution) == list(by_run.label_names)  # the model's label order
        assert p.label == by_run.label_names[int(row.argmax())]
        assert p.probability == p.distribution[p.label] == max(p.distribution.values())
        assert abs(sum(p.distribution.values()) - 1) < 1e-9


def test_opennre_records_equal_their_klue_form(run_dir, sample):
    model = relex.load(run_dir, device="cpu")
    klue = model.predict(sample[:10])
    nre = model.predict([opennre(r) for r in sample[:10]])
    assert [p.distribution for p in nre] == [p.distribution for p in klue]
    one = model.predict(opennre(sample[3]))  # one dict: one Prediction (alone: no padding)
    assert isinstance(one, relex.api.Prediction) and one.to_dict()["label"] == klue[3].label
    assert one.distribution == pytest.approx(klue[3].distribution, abs=1e-6)


def test_untyped_opennre_records_with_an_untyped_marker_style(erpe_run_dir, sample):
    model = relex.load(erpe_run_dir)
    assert not model.typed
    typed = model.predict([opennre(r) for r in sample[:8]])
    untyped = model.predict([opennre(r, typed=False) for r in sample[:8]])
    # entity_marker_punct never reads the type: the predictions do not depend on it
    assert [p.distribution for p in untyped] == [p.distribution for p in typed]


@pytest.mark.parametrize("bad, needle", [
    (["not a record"], r"records\[1\]: expected a dict"),
    ([{"text": "가나다라마", "h": {"pos": [0, 9], "type": "PER"}, "t": {"pos": [3, 4], "type": "ORG"}}],
     r"records\[1\]: 'h.pos' \[0, 9\] is not a span"),
    ([{"text": "가나다라마", "h": {"pos": [0, 2], "type": "PER", "name": "가x"},
       "t": {"pos": [3, 4], "type": "ORG"}}], r"records\[1\]: 'h.name' is '가x' but text\[0:2\] is '가나'"),
    ([{"text": "가나다라마", "h": {"pos": [0, 2]}, "t": {"pos": [3, 4], "type": "ORG"}}],
     r"records\[1\]: 'h' has no 'type'"),
    ([{"text": "가나다라마", "h": {"pos": "0-2"}, "t": {"pos": [3, 4]}}], r"records\[1\]: 'h.pos' must be"),
])
def test_a_bad_record_raises_one_error_naming_it(run_dir, sample, bad, needle):
    model = relex.load(run_dir)
    with pytest.raises(RecordError, match=needle) as e:
        model.predict([sample[0], *bad])
    assert isinstance(e.value, ValueError) and "\n" not in str(e.value)


def test_a_bad_klue_record_is_named_by_the_data_checks(run_dir, sample):
    model = relex.load(run_dir)
    broken = dict(sample[1], subject_entity={**sample[1]["subject_entity"], "word": "없는말"})
    with pytest.raises(RecordError, match=r"^records\[2\]: .*subject") as e:
        model.predict([sample[0], sample[2], broken, broken])
    assert "(and 1 more bad record)" in str(e.value)
    with pytest.raises(RecordError, match="empty list"):
        model.predict([])
    with pytest.raises(relex.api.RelexError, match="batch_size=0"):
        model.predict(sample[:2], batch_size=0)


def test_klue_record_converts_opennre_end_exclusive():
    rec = {"text": "이순신은 조선의 장군이다.", "h": {"pos": [0, 3], "type": "PER"},
           "t": {"pos": [5, 7], "type": "LOC"}, "relation": "per:origin"}
    got = klue_record(rec, 0)
    assert got["subject_entity"] == {"word": "이순신", "start_idx": 0, "end_idx": 2, "type": "PER"}
    assert got["object_entity"] == {"word": "조선", "start_idx": 5, "end_idx": 6, "type": "LOC"}
    assert got["label"] == "per:origin" and got["sentence"] == rec["text"]
    untyped = klue_record({"text": "이순신은 조선", "h": {"pos": [0, 3]}, "t": {"pos": [5, 7]}}, 0, typed=False)
    assert untyped["subject_entity"]["type"] == untyped["object_entity"]["type"] != ""


def test_load_errors_are_one_line(tmp_path):
    with pytest.raises(relex.api.RelexError, match="not found"):
        relex.load(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(relex.api.RelexError, match="not a relex checkpoint, run directory"):
        relex.load(tmp_path / "empty")


def test_evaluate_and_predict_take_a_run_directory(run_dir, tmp_path, capsys):
    from relex.data.sample import SAMPLE_PATH

    rc, out_run, err = cli(["evaluate", run_dir, SAMPLE_PATH, "--json"], capsys)
    assert rc == 0, err
    rc, out_best, _ = cli(["evaluate", run_dir / "best", SAMPLE_PATH, "--json"], capsys)
    a, b = json.loads(out_run), json.loads(out_best)
    for k in ("micro_f1", "auprc", "accuracy", "n"):
        assert a[k] == b[k]
    paths = []
    for model in (run_dir, run_dir / "best"):
        dest = tmp_path / f"{model.name}.csv"
        rc, _, err = cli(["predict", model, SAMPLE_PATH, "--output", dest], capsys)
        assert rc == 0, err
        paths.append(dest)
    assert paths[0].read_text() == paths[1].read_text()
    rc, _, err = cli(["evaluate", tmp_path, SAMPLE_PATH], capsys)
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "not a relex checkpoint, run directory" in err


def test_inference_runs_in_float32_unless_amp_is_given(run_dir, sample, tmp_path, capsys, cpu_bf16):
    """The model's predictions are the same on a CPU with native bf16 and without (the training
    run's amp=auto is not inherited); --amp at inference time is what changes the precision."""
    from relex.data.sample import SAMPLE_PATH
    from relex.train import amp as amp_mod
    from relex.train.predict import predict_probs

    model = relex.load(run_dir)
    ds = relex.api.records_dataset(sample, model.labels())
    feats = model.features(ds)
    fp32 = predict_probs(model.model, feats, batch_size=model.config.eval_batch_size)
    np.testing.assert_array_equal(model.predict_proba(ds), fp32)
    bf16 = predict_probs(model.model, feats, batch_size=model.config.eval_batch_size,
                         amp=amp_mod.resolve("bf16", "cpu"))
    assert np.abs(bf16 - fp32).max() > 1e-4  # the precisions differ on this data
    np.testing.assert_array_equal(relex.load(run_dir, amp="bf16").predict_proba(ds), bf16)
    written = {}
    for flags in ((), ("--amp", "bf16")):
        dest = tmp_path / f"preds{len(flags)}.csv"
        rc, _, err = cli(["predict", run_dir, SAMPLE_PATH, "--output", dest, *flags], capsys)
        assert rc == 0, err
        rows = dest.read_text(encoding="utf-8").splitlines()[1:]
        written[flags] = np.array([json.loads(r.split(",", 2)[2].strip('"')) for r in rows])
    np.testing.assert_allclose(written[()], fp32, rtol=0, atol=1e-12)
    np.testing.assert_allclose(written[("--amp", "bf16")], bf16, rtol=0, atol=1e-12)
    rc, _, err = cli(["evaluate", run_dir, SAMPLE_PATH, "--amp", "fp8"], capsys)
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "--amp" in err


def _readme_block(marker: str) -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    m = re.search(rf"<!-- {marker} -->\s*```python\n(.*?)```", text, re.S)
    assert m, f"README has no python block after <!-- {marker} -->"
    return m.group(1)


def test_readme_api_example_runs(run_dir, tmp_path):
    """The README's Python example, run as written from a directory where its paths exist."""
    (tmp_path / "artifacts").mkdir()
    (tmp_path / "artifacts" / "run1").symlink_to(run_dir, target_is_directory=True)
    code = _readme_block("example: python-api")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                          timeout=600, env=_env())
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    model = relex.load(run_dir)
    assert lines and lines[0].split()[0] in model.label_names


def _env():
    import os

    return {**os.environ, "PYTHONPATH": str(ROOT)}


# ----------------------------------------------------------------------------- ONNX
def _onnx_ready():
    for module in ("onnx", "onnxscript", "onnxruntime"):
        found = pytest.importorskip(module, reason=f"{module} is missing: the onnx extra, pip install -e '.[onnx]'")
    return found


@pytest.mark.parametrize("which", ["run_dir", "erpe_run_dir"])
def test_onnx_export_reproduces_relex_probabilities(which, request, sample, tmp_path, capsys):
    ort = _onnx_ready()
    run = request.getfixturevalue(which)
    dest = tmp_path / "model.onnx"
    rc, _, err = cli(["export", run, "--onnx", dest], capsys)
    assert rc == 0, err
    model = relex.load(run)
    sess = ort.InferenceSession(str(dest), providers=["CPUExecutionProvider"])
    meta = sess.get_modelmeta().custom_metadata_map
    assert json.loads(meta["labels"]) == list(model.label_names)
    assert meta["negative_label"] == model.negative_label and meta["marker"] == model.config.marker
    inputs = {i.name: i.shape for i in sess.get_inputs()}
    assert set(inputs) == set(model.encode(sample[:1]))
    assert all(isinstance(d, str) for d in inputs["input_ids"])  # batch and sequence are dynamic
    want = np.array([[p.distribution[n] for n in model.label_names] for p in model.predict(sample)])
    # the whole bundled sample in one batch, then two small batches of other shapes
    for chunk in (slice(None), slice(0, 3), slice(100, 101)):
        (probs,) = sess.run(["probs"], model.encode(sample[chunk]))
        assert probs.shape == want[chunk].shape
        np.testing.assert_allclose(probs, want[chunk], rtol=0, atol=1e-4)


def test_export_errors(run_dir, tmp_path, capsys, monkeypatch):
    rc, _, err = cli(["export", run_dir, "--onnx", tmp_path], capsys)
    assert rc == 2 and "is a directory" in err
    (tmp_path / "ens").mkdir()
    (tmp_path / "ens" / "ensemble.json").write_text("{}")
    rc, _, err = cli(["export", tmp_path / "ens", "--onnx", tmp_path / "m.onnx"], capsys)
    assert rc == 2 and "export takes one checkpoint" in err
    import importlib.machinery
    import importlib.util

    # the message names what is missing: both cases, whichever extras this machine has
    real = importlib.util.find_spec
    for missing, present, needs in ((("onnx", "onnxscript"), (), "onnx and onnxscript"),
                                    (("onnxscript",), ("onnx",), "onnxscript")):
        def find_spec(name, *a, missing=missing, present=present):
            if name in missing:
                return None
            return importlib.machinery.ModuleSpec(name, None) if name in present else real(name, *a)

        monkeypatch.setattr(importlib.util, "find_spec", find_spec)
        rc, _, err = cli(["export", run_dir, "--onnx", tmp_path / "m.onnx"], capsys)
        assert rc == 2 and err.strip() == f"relex: error: --onnx needs {needs}: pip install 'relex[onnx]'"
        assert not (tmp_path / "m.onnx").exists()
