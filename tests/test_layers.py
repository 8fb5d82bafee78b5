"""The package layout is a map of the data flow: data → model → train → sweep → analysis /
leaderboard. A lower layer never imports a higher one, not even inside a function (a lazy import
is still a dependency). Checked on the source, every import statement of every module."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "relex"

# the rank of each top-level unit of the package; an import may only go to an equal or lower rank
RANK = {
    # foundations every layer uses: the one config, errors, atomic writes, metrics, trackers
    "config": 0, "errors": 0, "io_utils": 0, "metrics": 0, "tracking": 0,
    "data": 1,
    "model": 2,
    "train": 3,
    "export": 4,  # a trained model as one ONNX graph
    "sweep": 5,
    # what users do with models and sweeps: reports, ensembles, leaderboard tables, predictions
    "analysis": 6, "inference": 6, "api": 6,
    # the commands that draw analysis' tables: relex leaderboard, relex sweep's live leaderboard
    "leaderboard": 7, "cli": 7,
}


def _unit(path: Path) -> str:
    rel = path.relative_to(ROOT)
    return rel.parts[0].removesuffix(".py")


def _imported_units(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                parts = a.name.split(".")
                if parts[0] == "relex" and len(parts) > 1:
                    yield parts[1], node.lineno
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            parts = node.module.split(".")
            if parts[0] != "relex":
                continue
            if len(parts) > 1:
                yield parts[1], node.lineno
            else:  # from relex import metrics, api
                for a in node.names:
                    if not a.name.startswith("__"):
                        yield a.name, node.lineno


def test_every_unit_has_a_rank():
    units = {_unit(p) for p in ROOT.rglob("*.py")} - {"__init__"}
    assert units <= set(RANK), f"place these in RANK: {sorted(units - set(RANK))}"


def test_no_module_imports_a_higher_layer():
    upward = []
    for path in sorted(ROOT.rglob("*.py")):
        src = _unit(path)
        if src == "__init__":
            continue  # the package root: relex.load() defers to relex.api when called
        for dst, line in _imported_units(ast.parse(path.read_text(encoding="utf-8"))):
            if RANK.get(dst, -1) > RANK[src]:
                upward.append(f"{path.relative_to(ROOT.parent)}:{line}: {src} imports {dst}")
    assert not upward, "\n".join(upward)


def test_the_check_sees_a_lazy_upward_import():
    # the same walk over a function that imports the leaderboard inside its body
    tree = ast.parse("def draw():\n    from relex.leaderboard import rich_table\n")
    assert list(_imported_units(tree)) == [("leaderboard", 2)]
