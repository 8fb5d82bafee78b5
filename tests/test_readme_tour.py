"""README's commands run, as written and in order: every bash command of the tour and of the
Data, Training, Sweeps and Reports sections, read from README.md itself (so README cannot
drift from the product), in a scratch copy of the repository's layout (``relex/`` and ``jobs/``
linked, an empty ``artifacts/``, ``../shared`` linked when the shared data is there, a scratch
``HOME`` holding relex's cache).

Skipped, each with its reason: what needs a network or starts a service (``pip install``,
``tensorboard --logdir``, ``mlflow ui``), what sets up a shell (``source .venv/bin/activate``:
the commands run with this checkout's relex), synopses (``[optional]`` parts), commands on
``../shared`` when it is absent, and the tracker command when a tracker extra is missing.

Deviations, so the tour fits in CI (the same commands, flags and outputs, on less data): the
scratch ``../shared/data/klue-re`` holds a stratified slice of KLUE-RE train (``KLUE_SLICE`` rows,
the same rows in its JSON and its CSV, the real ``relation_list.json``); ``relex train`` on it runs
capped at 30 optimizer steps (``--max-steps 30`` appended) and ``relex pretrain`` at 20
(``--steps 20 --save-every 10`` appended: the last flag wins). ``insects-re`` is the real one.

An exit code other than 0 is expected only where README's comment says so (``# ..., exit 2``).
A failed command fails its test and every later one is skipped (each builds on the ones before).
"""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import SHARED_DATA

ROOT = Path(__file__).resolve().parents[1]
SECTIONS = ("A tour on the embedded default", "Data", "Training", "Sweeps",
            "Reports: what a sweep concluded")
SERVICES = ("tensorboard", "mlflow")  # their UIs: servers that run until stopped
KLUE_SLICE = 1000
CAPPED = {("train", "../shared/data/klue-re/klue-re-v1.1_train.json"): ["--max-steps", "30"],
          ("pretrain", "../shared/data/klue-re/klue-re-v1.1_train.json"): ["--steps", "20",
                                                                         "--save-every", "10"]}

# the tour trains, sweeps and pretrains for real: it runs with the end-to-end tests (make test-e2e)
pytestmark = [pytest.mark.slow, pytest.mark.ray]


@dataclass
class Command:
    section: str
    line: str  # as README writes it (continuations joined, comment dropped)
    comment: str
    env: dict[str, str]
    argv: list[str]


def readme_commands(text: str) -> list[Command]:
    """The bash commands of SECTIONS (their ### subsections included), in README's order."""
    out: list[Command] = []
    section, inside, pending = None, False, ""
    for raw in text.splitlines():
        if raw.startswith("## "):
            section = raw[3:].strip()
        if raw.startswith("```"):
            inside = raw.strip() == "```bash" if not inside else False
            continue
        if not inside or section not in SECTIONS:
            continue
        line = pending + raw.strip()
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        pending = ""
        code, _, comment = line.partition(" #")
        if line.startswith("#") or not code.strip():
            continue
        words = shlex.split(code)
        env = {}
        while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):
            k, _, v = words.pop(0).partition("=")
            env[k] = v
        out.append(Command(section, code.strip(), comment.strip(), env, words))
    return out


COMMANDS = readme_commands((ROOT / "README.md").read_text(encoding="utf-8"))


def skip_reason(cmd: Command) -> str | None:
    argv = cmd.argv
    if argv[:1] == ["source"]:
        return "sets up a shell; the commands run with this checkout's relex"
    if argv[:2] == ["pip", "install"]:
        return "installs from a package index (network)"
    if argv[0] in SERVICES:
        return f"starts the {argv[0]} UI, a server"
    if argv[0] not in ("relex", "ls"):
        return f"not a relex command ({argv[0]})"
    if any(a.startswith("[") for a in argv):
        return "a synopsis"
    if any("../shared/" in a for a in argv) and not SHARED_DATA.is_dir():
        return f"needs ../shared (not at {SHARED_DATA})"
    if "--logger" in argv:
        missing = [m for m in ("tensorboard", "mlflow", "wandb") if importlib.util.find_spec(m) is None]
        if missing:
            return f"needs the tracker extras: {', '.join(missing)} not installed"
    return None


def expected_code(cmd: Command) -> int:
    m = re.search(r"\bexit (\d+)\b", cmd.comment)
    return int(m.group(1)) if m else 0


def klue_slice(src: Path, dst: Path, n: int) -> None:
    """KLUE-RE's files with ``n`` of its training rows, drawn stratified by label (seed 0): the
    JSON and the CSV hold the same rows, as the real ones do."""
    import json

    import pandas as pd
    from sklearn.model_selection import train_test_split

    dst.mkdir(parents=True)
    rows = json.loads((src / "klue-re-v1.1_train.json").read_text(encoding="utf-8"))
    labels = [r["label"] for r in rows]
    keep, _ = train_test_split(range(len(rows)), train_size=n, stratify=labels, random_state=0)
    kept = [rows[i] for i in sorted(keep)]
    (dst / "klue-re-v1.1_train.json").write_text(json.dumps(kept, ensure_ascii=False), encoding="utf-8")
    csv = pd.read_csv(src / "train.csv")
    ids = {r["guid"] for r in kept}
    csv[csv["id"].isin({int(g.rsplit("_", 1)[-1]) for g in ids})].to_csv(dst / "train.csv", index=False)
    (dst / "relation_list.json").write_bytes((src / "relation_list.json").read_bytes())


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """The repository's layout, as README's commands expect it: relex/ and jobs/ (linked),
    an empty artifacts/, ../shared beside it."""
    base = tmp_path_factory.mktemp("readme")
    repo = base / "repo"
    repo.mkdir()
    for name in ("relex", "jobs"):
        (repo / name).symlink_to(ROOT / name)
    (repo / "artifacts").mkdir()
    if SHARED_DATA.is_dir():
        data = base / "shared" / "data"
        data.mkdir(parents=True)
        (data / "insects-re").symlink_to(SHARED_DATA / "insects-re")
        klue_slice(SHARED_DATA / "klue-re", data / "klue-re", KLUE_SLICE)
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "HOME": str(base / "home"), "RAY_AUTH_MODE": "disabled",
           "RAY_USAGE_STATS_ENABLED": "0", "TOKENIZERS_PARALLELISM": "false", "COLUMNS": "200"}
    for name in ("RAY_ADDRESS", "RELEX_CACHE"):  # relex's cache: ~/.cache/relex, as README says
        env.pop(name, None)
    return {"repo": repo, "env": env, "failed": []}


def test_readme_tour_is_found():
    firsts = [c.line for c in COMMANDS if c.section == SECTIONS[0]]
    assert firsts[1] == "relex data check relex/data/sample/klue_sample.json"
    assert "relex sweep jobs/smoke.py --overwrite" in firsts
    assert {c.section for c in COMMANDS} >= {"A tour on the embedded default", "Data", "Training"}
    runnable = [c for c in COMMANDS if skip_reason(c) is None or "../shared" in c.line]
    assert len(runnable) >= 20


@pytest.mark.parametrize("cmd", COMMANDS, ids=[f"{i:02d} {c.line[:60]}" for i, c in enumerate(COMMANDS)])
def test_readme_command_runs(cmd, workspace):
    reason = skip_reason(cmd)
    if reason:
        pytest.skip(reason)
    if workspace["failed"]:
        pytest.skip(f"an earlier command failed: {workspace['failed'][0]}")
    if cmd.argv[0] == "ls":  # README's look at what relex made; `~` is the scratch HOME
        argv = ["bash", "-c", cmd.line]
    else:
        argv = [sys.executable, "-m", "relex.cli", *cmd.argv[1:]]
    for (command, data), cap in CAPPED.items():
        if cmd.argv[:2] == ["relex", command] and data in cmd.argv:
            argv += cap
    try:
        p = subprocess.run(argv, cwd=workspace["repo"], env={**workspace["env"], **cmd.env},
                           capture_output=True, text=True, timeout=1200)
    except subprocess.TimeoutExpired:
        workspace["failed"].append(cmd.line)
        raise
    if p.returncode != expected_code(cmd):
        workspace["failed"].append(cmd.line)
        pytest.fail(f"README's `{cmd.line}` exited {p.returncode} (README: {expected_code(cmd)}):\n"
                    f"{p.stdout[-2000:]}\n{p.stderr[-3000:]}")
    if expected_code(cmd):  # a refusal: one line, no traceback
        assert "Traceback" not in p.stderr
