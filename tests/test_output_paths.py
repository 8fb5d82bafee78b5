"""Every command that writes fails in one line on an output path it cannot write: a file where
a directory is expected, no permission, a missing parent (only ``--storage`` refuses one: an
unmounted shared file system must not become a local directory; every other output creates
the directories above it). One line naming the path and the reason, exit code 2, checked before
any work, and nothing written.

"No permission" is real: the test directory is read-only (0o555) and, when the suite runs as
root (for whom permissions do not apply), the command runs with the effective user and group
of ``nobody``, for which they do.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
import tempfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from relex.cli import main
from relex.data.sample import SAMPLE_PATH
from synthetic_sweep import make_sweep

NOBODY = 65534
TINY = ["--tiny-hidden", "16", "--tiny-layers", "1", "--tiny-heads", "2", "--tiny-vocab", "400",
        "--max-length", "48", "--epochs", "1", "--max-steps", "2", "--eval-every", "2",
        "--num-threads", "1", "--amp", "off"]


@contextlib.contextmanager
def unprivileged():
    """Run the block as a user that file permissions apply to (``nobody`` when root)."""
    if os.geteuid() != 0:
        yield
        return
    os.setegid(NOBODY)
    os.seteuid(NOBODY)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)


@pytest.fixture(scope="module")
def world():
    """A directory everyone may read (pytest's own are the owner's only): the inputs and the
    permission tests live here, so that ``nobody`` reads the inputs and is refused the output."""
    d = Path(tempfile.mkdtemp(prefix="relex-paths-"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def inputs(world):
    """A tiny trained checkpoint (trained into a directory whose parents did not exist: the
    missing-parent case of `train --out`), a sweep directory, a job file, a small data file."""
    d = world / "inputs"
    d.mkdir(mode=0o755)
    data = json.loads(Path(SAMPLE_PATH).read_text(encoding="utf-8"))[:120]
    (d / "small.json").write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    run_dir = d / "new" / "deeper" / "run"
    assert main(["train", "--train", str(d / "small.json"), "--out", str(run_dir), *TINY]) == 0
    assert (run_dir / "best" / "model.safetensors").is_file()
    sweep = make_sweep(d / "sweeps", axes={"head": ["cls", "marker"]}, seeds=[1, 2],
                       effect=lambda c: 0.0)
    rows = pq.read_table(sweep / "trials.parquet").to_pylist()
    assert rows  # the synthetic sweep's trials; ensembles need checkpoints on disk
    job = d / "job.py"
    job.write_text("from relex.sweep import Sweep, grid\n"
                   f"sweep = Sweep(name='paths', train={str(d / 'small.json')!r}, "
                   "space=dict(lr=grid([1e-3])), resources=dict(gpu=0, cpu=1))\n")
    return {"data": d / "small.json", "run": run_dir, "sweep": sweep, "job": job}


def _onnx():
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")


# name -> (argv given the inputs and the output path, the flag, directory output?, needs)
COMMANDS = {
    "sweep --storage": (lambda i, o: ["sweep", str(i["job"]), "--storage", o], "--storage", True, None),
    "data fix --out": (lambda i, o: ["data", "fix", str(i["data"]), "--out", o], "--out", False, None),
    "data stats --html": (lambda i, o: ["data", "stats", str(i["data"]), "--html", o], "--html", False, None),
    "report --html": (lambda i, o: ["report", str(i["sweep"]), "--html", o], "--html", False, None),
    "predict --output": (lambda i, o: ["predict", str(i["run"]), str(i["data"]), "--output", o],
                         "--output", False, None),
    "export --onnx": (lambda i, o: ["export", str(i["run"]), "--onnx", o], "--onnx", False, _onnx),
    "train --out": (lambda i, o: ["train", "--train", str(i["data"]), "--out", o, *TINY], "--out", True, None),
    "ensemble --out": (lambda i, o: ["ensemble", str(i["sweep"]), "--out", o], "--out", True, None),
}
NAMES = {"--html": "out.html", "--output": "preds.csv", "--onnx": "model.onnx"}


def _target(flag: str, is_dir: bool) -> str:
    return "out" if is_dir else NAMES.get(flag, "fixed.json")


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def _fails_in_one_line(capsys, argv, flag, path, reason, root):
    before = _tree(root)
    rc = main(argv)
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith(f"relex: error: {flag} {path}: ") and reason in err, err
    assert _tree(root) == before  # nothing written, not even a directory


@pytest.mark.parametrize("name", COMMANDS)
def test_a_file_where_a_directory_is_expected(name, inputs, tmp_path, capsys):
    argv, flag, is_dir, needs = COMMANDS[name]
    if needs:
        needs()
    (tmp_path / "afile").write_text("x")
    path = str(tmp_path / "afile" / _target(flag, is_dir))  # its parent is a regular file
    _fails_in_one_line(capsys, argv(inputs, path), flag, path,
                       f"{tmp_path / 'afile'} is a file, not a directory", tmp_path)
    # the output itself the wrong kind: a file for a directory, a directory for a file
    path = tmp_path / "afile" if is_dir else tmp_path / "adir" / _target(flag, is_dir)
    if not is_dir:
        path.mkdir(parents=True)
    path = str(path)
    _fails_in_one_line(capsys, argv(inputs, path), flag, path,
                       "is a file; give a directory" if is_dir else "is a directory; give a file name",
                       tmp_path)


@pytest.mark.parametrize("name", COMMANDS)
def test_no_permission(name, inputs, world, capsys):
    argv, flag, is_dir, needs = COMMANDS[name]
    if needs:
        needs()
    root = world / name.replace(" ", "_")
    locked = root / "locked"
    locked.mkdir(parents=True)
    locked.chmod(stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
    paths = [locked / _target(flag, is_dir)]
    if flag != "--storage":  # (--storage refuses a missing parent before permissions matter)
        paths.append(locked / "sub" / _target(flag, is_dir))
    for path in map(str, paths):
        with unprivileged():
            _fails_in_one_line(capsys, argv(inputs, path), flag, path,
                               f"cannot write in {locked} (Permission denied)", root)


@pytest.mark.parametrize("name", COMMANDS)
def test_a_missing_parent(name, inputs, tmp_path, capsys):
    argv, flag, is_dir, needs = COMMANDS[name]
    if needs:
        needs()
    path = tmp_path / "new" / "deeper" / _target(flag, is_dir)
    if flag == "--storage":  # refused: the directory above the storage must exist
        _fails_in_one_line(capsys, argv(inputs, str(path)), flag, path,
                           f"{path.parent} does not exist", tmp_path)
        return
    if name == "train --out":  # the module's checkpoint was trained this way (new/deeper/run)
        assert (inputs["run"] / "best" / "model.safetensors").is_file()
        return
    rc = main(argv(inputs, str(path)))
    err = capsys.readouterr().err
    if name == "ensemble --out":
        # the check passes (the directories would be created); the synthetic sweep has no
        # checkpoints on disk, so the selection refuses, and nothing is written
        assert rc == 2 and "no finished trial has validation probabilities and a checkpoint" in err
        assert not (tmp_path / "new").exists()
        return
    assert rc == 0, err
    assert path.is_file() and path.stat().st_size > 0
