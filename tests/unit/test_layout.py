"""The house shows its parts: which part of `mailer` may import which (DESIGN section 3), that only
`mailer.cli` reaches the web face, that nothing imports `mailer.cli`, and no import cycle at all.

The table lives here, not in docstrings: a new import across a boundary fails this test.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("mailer", "unsubscribe_web")
PARTS = ("consent", "sending", "inbound", "rights", "cli")

# What each part of mailer may import besides itself ("shared" is the ground at mailer's top).
ALLOWED_PARTS: dict[str, set[str]] = {
    "shared": set(),
    "consent": {"shared"},
    "sending": {"shared", "consent"},
    "inbound": {"shared", "consent"},
    "rights": {"shared", "consent", "sending"},
    "cli": {"shared", "consent", "sending", "inbound", "rights", "web"},
    "web": {"shared", "consent", "sending", "inbound", "rights"},
}
# Single modules a part may reach in a part it may not otherwise import.
ALLOWED_MODULES: dict[str, set[str]] = {
    "inbound": {"mailer.sending.bounce_policy", "mailer.sending.campaign_status"},
}


@dataclass(frozen=True)
class Edge:
    importer: str
    imported: str
    line: int


def module_files(root: Path, packages: Iterable[str]) -> dict[str, Path]:
    """Dotted module name -> file, for every .py file of the packages."""
    found: dict[str, Path] = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def import_edges(root: Path, packages: Iterable[str]) -> tuple[set[str], list[Edge]]:
    """Every import of one of the packages' modules, at any depth (lazy imports count too)."""
    modules = module_files(root, packages)
    tops = tuple(packages)
    edges: list[Edge] = []
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = name.split(".")
                    anchor = anchor if is_package else anchor[:-1]
                    anchor = anchor[: len(anchor) - (node.level - 1)]
                    base = ".".join([*anchor, base] if base else anchor)
                for alias in node.names:
                    submodule = f"{base}.{alias.name}"
                    targets.append(submodule if submodule in modules else base)
            line = node.lineno if isinstance(node, ast.stmt) else 0
            for target in targets:
                if target.split(".")[0] in tops and target != name:
                    edges.append(Edge(name, resolve(target, modules), line))
    return set(modules), edges


def resolve(target: str, modules: Iterable[str]) -> str:
    """The longest existing module a dotted name starts with (`a.b.func` -> `a.b`)."""
    known = set(modules)
    parts = target.split(".")
    while parts and ".".join(parts) not in known:
        parts.pop()
    return ".".join(parts) or target


def part_of(module: str) -> str:
    top, _, rest = module.partition(".")
    if top == "unsubscribe_web":
        return "web"
    first = rest.split(".")[0]
    return first if first in PARTS else "shared"


def forbidden(edges: Iterable[Edge]) -> list[str]:
    found = []
    for edge in edges:
        source, target = part_of(edge.importer), part_of(edge.imported)
        if target == "cli" and source != "cli":
            found.append(
                f"{edge.importer}:{edge.line} imports {edge.imported}: nothing imports cli"
            )
        elif (
            source != target
            and target not in ALLOWED_PARTS[source]
            and edge.imported not in ALLOWED_MODULES.get(source, set())
        ):
            found.append(f"{edge.importer}:{edge.line} ({source}) imports {edge.imported}")
    return found


def cycles(modules: set[str], edges: Iterable[Edge]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for edge in edges:
        # A package's __init__ runs before its modules: importing a module of one's own
        # package is not a cycle through the package.
        inside_own_package = edge.importer.startswith(edge.imported + ".")
        if edge.imported in graph and edge.imported != edge.importer and not inside_own_package:
            graph[edge.importer].add(edge.imported)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return found


def test_every_import_is_allowed_by_the_table():
    _, edges = import_edges(ROOT, PACKAGES)
    assert forbidden(edges) == []


def test_no_import_cycle_between_any_two_modules():
    modules, edges = import_edges(ROOT, PACKAGES)
    assert cycles(modules, edges) == []


def test_each_part_says_what_it_owns():
    for init in [
        *(ROOT / "mailer").glob("*/__init__.py"),
        *(ROOT / "unsubscribe_web").rglob("*/__init__.py"),
    ]:
        tree = ast.parse(init.read_text())
        assert ast.get_docstring(tree), f"{init} has no docstring"


def write_tree(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"mailer/sending/worker.py": "from mailer.inbound import handler\n"}, "(sending)"),
        ({"mailer/consent/writer.py": "from mailer.sending import campaigns\n"}, "(consent)"),
        ({"mailer/db.py": "from mailer.consent import writer\n"}, "(shared)"),
        ({"mailer/inbound/handler.py": "from mailer.sending import worker\n"}, "(inbound)"),
        (
            {"mailer/sending/worker.py": "def f():\n    from unsubscribe_web import app\n"},
            "(sending)",
        ),
        ({"unsubscribe_web/app.py": "from mailer.cli import main\n"}, "nothing imports cli"),
    ],
)
def test_the_checker_catches_a_forbidden_import(tmp_path: Path, files, expected):
    base = {
        "mailer/__init__.py": "",
        "mailer/db.py": "",
        "mailer/cli/__init__.py": "",
        "mailer/cli/main.py": "",
        "mailer/consent/__init__.py": "",
        "mailer/consent/writer.py": "",
        "mailer/sending/__init__.py": "",
        "mailer/sending/campaigns.py": "",
        "mailer/sending/worker.py": "",
        "mailer/inbound/__init__.py": "",
        "mailer/inbound/handler.py": "from mailer.sending import bounce_policy\n",
        "mailer/sending/bounce_policy.py": "",
        "unsubscribe_web/__init__.py": "",
        "unsubscribe_web/app.py": "",
    }
    write_tree(tmp_path, base)
    _, edges = import_edges(tmp_path, PACKAGES)
    assert forbidden(edges) == []  # the allowed exception (bounce policy) passes
    write_tree(tmp_path, files)
    _, edges = import_edges(tmp_path, PACKAGES)
    problems = forbidden(edges)
    assert len(problems) == 1 and expected in problems[0]


def test_the_checker_catches_a_cycle_even_through_a_lazy_import(tmp_path: Path):
    write_tree(
        tmp_path,
        {
            "mailer/__init__.py": "",
            "mailer/rights/__init__.py": "",
            "mailer/rights/erasure.py": "from mailer.rights.privacy import jsonable\n",
            "mailer/rights/privacy.py": "def f():\n    from mailer.rights import erasure\n",
            "unsubscribe_web/__init__.py": "",
        },
    )
    modules, edges = import_edges(tmp_path, PACKAGES)
    assert cycles(modules, edges) == [["mailer.rights.erasure", "mailer.rights.privacy"]]
