"""The package layout is a map of the data flow: data → model → train → sweep → analysis /
leaderboard. A lower layer never imports a higher one, not even inside a function (a lazy import
is still a dependency); no two modules import each other, however long the way round; and no
module reaches into another unit for a private (underscored) name. Checked on the source, every
import statement of every module."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "relex"

# the rank of each top-level unit of the package; an import may only go to an equal or lower rank
RANK = {
    # foundations every layer uses: the one config, errors, atomic writes, metrics, trackers
    "config": 0, "errors": 0, "io_utils": 0, "metrics": 0, "tracking": 0, "cli_args": 0,
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


# ------------------------------------------------------------------------------ circles
def _module_name(path: Path, root: Path = ROOT) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported_modules(tree: ast.AST, modules: set[str]):
    """(the relex module each import statement reaches, line); ``from relex.x import y`` reaches
    relex.x.y when that is a module, else relex.x."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        for name in names:
            while name not in modules and "." in name:
                name = name.rsplit(".", 1)[0]
            if name in modules and name != "relex":
                yield name, node.lineno


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    paths = {_module_name(p, root): p for p in root.rglob("*.py")}
    modules = set(paths)
    return {m: {dst for dst, _ in _imported_modules(ast.parse(p.read_text(encoding="utf-8")), modules)
                if dst != m}
            for m, p in paths.items()}


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of two or more modules (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_circles():
    found = circles(import_graph())
    assert not found, "modules that import each other (break the circle): " + "; ".join(
        " <-> ".join(group) for group in found)


def test_the_check_sees_a_circle_through_a_third_module():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert circles(graph) == [["a", "b", "c"]]
    assert circles({"a": {"b"}, "b": set()}) == []


# ----------------------------------------------------------------------- private names
def _private_imports(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("relex."):
            for a in node.names:
                if a.name.startswith("_") and not a.name.startswith("__"):
                    yield node.module.split(".")[1], a.name, node.lineno


def test_no_private_name_is_imported_from_another_unit():
    reached = []
    for path in sorted(ROOT.rglob("*.py")):
        src = _unit(path)
        for unit, name, line in _private_imports(ast.parse(path.read_text(encoding="utf-8"))):
            if unit != src:
                reached.append(f"{path.relative_to(ROOT.parent)}:{line}: {name} from relex.{unit}")
    assert not reached, "\n".join(reached)


def test_the_check_sees_a_private_helper():
    tree = ast.parse("from relex.train.commands import _positive_int, config_from_args\n")
    assert list(_private_imports(tree)) == [("train", "_positive_int", 1)]
