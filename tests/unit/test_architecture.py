"""The layout is the pipeline (ARCHITECTURE.md): imports run only down it, and there are no cycles.

Read from the source with `ast`, so an import inside a function counts as much as one at the top.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"
# Stage of each package; a module may import its own package and any stage below it.
STAGES = {
    "nertune.errors": 0,
    "nertune.atomic": 0,
    "nertune.console": 0,
    "nertune.collector": 0,
    "nertune.data": 1,
    "nertune.machine": 1,
    "nertune.model": 2,
    "nertune.evaluate": 3,
    "nertune.training": 4,
    "nertune.tag": 5,
    "nertune.export": 6,
    "nertune.serve": 6,
    "nertune.cli": 7,
    "nertune.__main__": 8,
}


def modules() -> dict[str, set[str]]:
    """Each nertune module -> the nertune modules it imports (anywhere in its source)."""
    graph = {}
    for path in sorted((SRC / "nertune").rglob("*.py")):
        parts = path.relative_to(SRC).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        imported = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("nertune") and not node.level:
                for alias in node.names:  # `from nertune.cli import train` names a module
                    sub = f"{node.module}.{alias.name}"
                    imported.add(
                        sub
                        if (SRC / sub.replace(".", "/")).with_suffix(".py").exists() or (SRC / sub.replace(".", "/")).is_dir()
                        else node.module
                    )
            elif isinstance(node, ast.ImportFrom):
                assert not node.level, f"{path}: relative import; write nertune.… in full"
            elif isinstance(node, ast.Import):
                imported |= {a.name for a in node.names if a.name.startswith("nertune")}
        graph[name] = imported - {name}
    return graph


def stage(module: str) -> tuple[int, str] | None:
    for prefix, rank in STAGES.items():
        if module == prefix or module.startswith(prefix + "."):
            return rank, prefix
    return None


def test_every_module_has_a_stage():
    unplaced = [m for m in modules() if m != "nertune" and stage(m) is None]
    assert not unplaced, f"put these in a stage (ARCHITECTURE.md): {unplaced}"


def wrong_imports(graph: dict[str, set[str]]) -> list[str]:
    wrong = []
    for module, imported in graph.items():
        if module == "nertune":
            continue  # the façade: lazy names only, checked below
        mine = stage(module)
        for other in imported:
            theirs = stage(other)
            if other == "nertune":
                continue  # `from nertune import __version__`: the façade imports nothing at load
            if theirs[0] > mine[0] or (theirs[0] == mine[0] and theirs[1] != mine[1]):
                wrong.append(f"{module} -> {other}")
    return sorted(wrong)


def test_imports_run_only_down_the_pipeline():
    wrong = wrong_imports(modules())
    assert not wrong, "imports against the pipeline:\n" + "\n".join(wrong)


def test_the_facade_imports_nothing_at_load():
    tree = ast.parse((SRC / "nertune" / "__init__.py").read_text())
    top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom)) and (getattr(n, "module", "") or "").startswith("nertune")]
    assert not top


def find_cycles(graph: dict[str, set[str]]) -> list[str]:
    # a package's __init__ re-exporting its own modules is not a cycle with them
    edges = {m: {o for o in deps if o in graph and not (m.startswith(o + ".") or o.startswith(m + "."))} for m, deps in graph.items()}
    state, cycles = {}, []

    def visit(node, path):
        state[node] = 1
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join(path[path.index(nxt) :] + [nxt]))
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])
    return cycles


def test_no_import_cycles():
    cycles = find_cycles(modules())
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_the_checks_can_fail():
    graph = modules()
    graph["nertune.data.packing"] = graph["nertune.data.packing"] | {"nertune.training.speed.dropout"}
    assert wrong_imports(graph) == ["nertune.data.packing -> nertune.training.speed.dropout"]
    graph["nertune.serve.app"] = graph["nertune.serve.app"] | {"nertune.export.onnx"}  # same stage, other package
    assert "nertune.serve.app -> nertune.export.onnx" in wrong_imports(graph)
    graph = {"nertune.tag.a": {"nertune.tag.b"}, "nertune.tag.b": {"nertune.tag.a"}}
    assert find_cycles(graph) == ["nertune.tag.a -> nertune.tag.b -> nertune.tag.a"]
