"""The library's imports run one way: no circle anywhere in src/prefdiv, the analysis side in
layers, matplotlib only in the figure module (issue 17).

The graph is read from the source with `ast`, imports inside functions included: a deferred
import that reaches back up is still a circle, only a later one.
"""

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "prefdiv"
MODULES = sorted(p.stem for p in SRC.glob("*.py") if p.stem != "__init__")

# The analysis side, lowest first: a module may import only those before it (and the pipeline
# side's modules, which never import these). names and catalogue import no prefdiv module.
ANALYSIS = (
    "names",
    "catalogue",
    "experiments",
    "grid",
    "workers",
    "sweep",
    "stats",
    "coverage",
    "frontiers",
    "plan",
    "replicates",
    "reference",
    "figures",
    "markdown",
    "paired",
    "matched",
    "fronts",
    "report",
    "cli",
)


def imports(module: str, src: Path = SRC) -> dict[str, set[str]]:
    """{'prefdiv': prefdiv modules it imports, 'external': top-level packages it imports}."""
    tree = ast.parse((src / f"{module}.py").read_text())
    found: dict[str, set[str]] = {"prefdiv": set(), "external": set()}
    known = {p.stem for p in src.glob("*.py")}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            parts = node.module.split(".")
            if parts[0] != "prefdiv":
                found["external"].add(parts[0])
            elif len(parts) > 1:
                found["prefdiv"].add(parts[1])
            else:
                found["prefdiv"] |= {a.name for a in node.names if a.name in known}
        elif isinstance(node, ast.Import):
            for a in node.names:
                parts = a.name.split(".")
                if parts[0] == "prefdiv" and len(parts) > 1:
                    found["prefdiv"].add(parts[1])
                elif parts[0] != "prefdiv":
                    found["external"].add(parts[0])
    found["prefdiv"].discard(module)
    found["prefdiv"].discard("__init__")
    return found


def graph(src: Path = SRC) -> dict[str, set[str]]:
    mods = sorted(p.stem for p in src.glob("*.py") if p.stem != "__init__")
    return {m: imports(m, src)["prefdiv"] & set(mods) for m in mods}


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """One import circle per strongly connected group of modules (Tarjan), as a path."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(g[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def reach(g: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for w in g[todo.pop()] - seen:
            seen.add(w)
            todo.append(w)
    return seen


def test_no_import_circle_in_the_library():
    assert cycles(graph()) == []


def test_the_circle_check_finds_a_deferred_circle(tmp_path):
    (tmp_path / "a.py").write_text("from prefdiv import b\n")
    (tmp_path / "b.py").write_text("def f():\n    from prefdiv.c import x\n")
    (tmp_path / "c.py").write_text("import prefdiv.a\n")
    (tmp_path / "d.py").write_text("from prefdiv import a\n")
    assert cycles(graph(tmp_path)) == [["a", "b", "c"]]


def test_the_analysis_side_imports_one_way():
    g = graph()
    assert set(ANALYSIS) <= set(MODULES), set(ANALYSIS) - set(MODULES)
    pipeline = set(MODULES) - set(ANALYSIS)
    for i, module in enumerate(ANALYSIS):
        upward = g[module] & set(ANALYSIS[i:])
        assert not upward, f"{module} imports {sorted(upward)}, above it in {ANALYSIS}"
    for module in pipeline:  # the stages' modules never reach the analysis side
        allowed = {"catalogue"}  # the metric catalogue: evaluate writes its columns
        assert not (reach(g, module) & (set(ANALYSIS) - allowed)), module
    assert g["names"] == set() and g["catalogue"] == set()


def test_matplotlib_only_in_the_figure_module():
    drawing = {m for m in MODULES if "matplotlib" in imports(m)["external"]}
    assert drawing == {"figures"}
    g = graph()
    for module in ANALYSIS[: ANALYSIS.index("figures")]:
        assert "figures" not in reach(g, module), module


def test_prefdiv_grid_loads_no_plotting_or_text_metric_library():
    """`prefdiv grid` reads the grid file and drives DVC: it needs no matplotlib, scipy or
    sacrebleu (the reports import them when they run)."""
    code = (
        "import sys\n"
        "from prefdiv import cli, sweep\n"
        "cli.parser().parse_args(['grid', '--seeds', '0'])\n"
        "print(sorted(m for m in ('matplotlib', 'scipy', 'sacrebleu') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_analysis_modules_stay_small():
    """One job per module: none of the analysis side over ~400 lines."""
    sizes = {m: len((SRC / f"{m}.py").read_text().splitlines()) for m in ANALYSIS}
    assert max(sizes.values()) <= 400, sizes
