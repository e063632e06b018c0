"""The layout's rules that a reader relies on: no import cycles among the toolkit's modules
(function-level imports included: a cycle there is still a tangle), and no module over ~500
lines without a reason stated at its top."""
import ast
from pathlib import Path

TOOLKIT = Path(__file__).resolve().parents[1] / "toolkit"
LONG = 500
# Modules over LONG lines say why at their top, after this marker.
REASON_MARKER = "Long because"


def _modules() -> dict[str, Path]:
    found = {}
    for path in TOOLKIT.rglob("*.py"):
        parts = path.relative_to(TOOLKIT.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                target = f"{base}.{alias.name}"
                out.add(target if target in modules else base)
        elif isinstance(node, ast.Import):
            out |= {alias.name for alias in node.names}
    return {m for m in out if m in modules and m != name}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in sorted(graph[node]):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycles_among_the_toolkits_modules():
    modules = _modules()
    graph = {name: _imports(name, path, modules) for name, path in modules.items()}
    assert _cycles(graph) == []
    assert _cycles({"a": {"b"}, "b": {"a"}, "c": set()}) == [["a", "b"]]  # the check works


def test_long_modules_say_why_at_their_top():
    unexplained = [str(path.relative_to(TOOLKIT.parent)) for path in _modules().values()
                   if len(path.read_text().splitlines()) > LONG
                   and REASON_MARKER not in "\n".join(path.read_text().splitlines()[:30])]
    assert unexplained == []


def test_frameworks_are_declared_once():
    from toolkit import frameworks
    from toolkit.experiments.kinds import base
    from toolkit.images import doctor, matrix

    assert base.Framework.__args__ == frameworks.NAMES == matrix.FRAMEWORKS
    assert set(doctor.HOST_FRAMEWORKS) == {p for f in frameworks.FRAMEWORKS.values()
                                           for p in f.host_packages}
    assert set(matrix.load().platforms["amd64"].frameworks) == set(frameworks.NAMES)
