"""Every `relex` command README shows in its bash blocks is current: relex's own argument parser
accepts it as written (subcommand, flags, their values). The tour and the Data, Training, Sweeps
and Reports sections also run for real, in order (test_readme_tour), and the cluster commands in
test_cluster_jobs; this catches a renamed or dropped flag in every section at once, the
cluster and ensemble sections included."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    """The `relex ...` commands of README's bash blocks: continuation lines joined, comments
    dropped, `a && b` split, the command after `ray job submit ... --` included, synopses with
    [optional] parts left out."""
    out, inside, pending = [], False, ""
    for line in (ROOT / "README.md").read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            inside = line.strip() == "```bash" if not inside else False
            continue
        if not inside:
            continue
        line = pending + line.strip()
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        pending = ""
        words = shlex.split(line, comments=True)
        for part in " ".join(shlex.quote(w) for w in words).split(" && "):
            tokens = shlex.split(part)
            if any(t.startswith("[") for t in tokens):
                continue  # a synopsis (`relex report [SWEEP_DIR] [--html FILE] ...`), not a command
            if "relex" in tokens:
                out.append(shlex.join(tokens[tokens.index("relex"):]))
    return out


COMMANDS = readme_commands()


def test_readme_shows_the_main_commands():
    # the extraction itself works: the tour's commands are found
    assert "relex sweep jobs/smoke.py --overwrite" in COMMANDS
    assert any(c.startswith("relex ensemble ") for c in COMMANDS)
    assert any(c.startswith("relex sweep jobs/ablation.py --storage") for c in COMMANDS)
    assert len(COMMANDS) >= 30


@pytest.mark.parametrize("command", COMMANDS)
def test_readme_command_parses(command, capsys):
    from relex.cli import build_parser

    try:
        args = build_parser().parse_args(shlex.split(command)[1:])
    except SystemExit as e:  # argparse's error exit, with its one line on stderr
        pytest.fail(f"README's `{command}` is not a valid relex command (exit {e.code}): "
                    f"{capsys.readouterr().err.strip()}")
    assert hasattr(args, "_run"), f"README's `{command}` names a command group, not a command"
