"""The layering of eta_cli stays as docs/architecture.md draws it.

Read from the source with :mod:`ast` (nothing is imported), so a rule broken anywhere,
including an import inside a function, fails here with the module and line that broke it:
no import cycles, no shared module importing a stage, environment variables only in
config.py, terminal output only in the commands, no reaching into another module's
private names, and modules and functions of a size a reader can hold.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from functools import cache
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "eta_cli"

# Shared modules sit below every stage: they may import each other, never a stage.
SHARED = {
    "schema", "orders", "features", "model", "config", "errors", "progress", "storage",
    "redact", "order_ids", "booster", "model_cache", "tracking", "registry",
    "registry_lookup", "registration", "promotion", "lake",
}  # fmt: skip
STAGES = {
    "ingest", "train", "predict", "serve", "monitor", "pipeline", "doctor", "commands", "cli",
}  # fmt: skip
# Where the terminal may be written to: the Typer app and its commands.
TERMINAL = {"commands", "cli", "__main__"}
MAX_MODULE_LINES = 700
MAX_FUNCTION_LINES = 100


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@cache
def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


@cache
def tree(name: str) -> ast.Module:
    return ast.parse(modules()[name].read_text(encoding="utf-8"))


def top(name: str) -> str:
    """``eta_cli.lake.store`` -> ``lake``: the shared module or stage a module belongs to."""
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def runtime_nodes(node: ast.AST) -> Iterator[ast.AST]:
    """Every node below ``node`` except the bodies of ``if TYPE_CHECKING:``.

    Those imports never run: they name a type for annotations only, so they are no
    dependency at import or call time and cannot close a cycle.
    """
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
            yield from (n for sub in child.orelse for n in (sub, *runtime_nodes(sub)))
            continue
        yield child
        yield from runtime_nodes(child)


def imported(name: str, node: ast.Import | ast.ImportFrom) -> list[tuple[str, str | None]]:
    """(module, imported name or None) pairs of one import statement, resolved to eta_cli
    modules where the target is one (``from eta_cli.lake import lock`` is the module
    ``eta_cli.lake.lock``, ``from eta_cli.lake import Lake`` a name of ``eta_cli.lake``)."""
    known = modules()
    if isinstance(node, ast.Import):
        return [(alias.name, None) for alias in node.names]
    base = node.module or ""
    if node.level:
        package = name if known[name].name == "__init__.py" else name.rpartition(".")[0]
        parts = package.split(".")[: len(package.split(".")) - node.level + 1]
        base = ".".join(parts + ([node.module] if node.module else []))
    pairs: list[tuple[str, str | None]] = []
    for alias in node.names:
        candidate = f"{base}.{alias.name}"
        pairs.append((candidate, None) if candidate in known else (base, alias.name))
    return pairs


def owner(target: str) -> str | None:
    """The eta_cli module an import target lives in, or None for a third-party one."""
    known = modules()
    while target not in known and "." in target:
        target = target.rpartition(".")[0]
    return target if target in known else None


@cache
def graph() -> dict[str, dict[str, int]]:
    """module -> {imported eta_cli module: line of the first such import}."""
    edges: dict[str, dict[str, int]] = {}
    for name in modules():
        deps: dict[str, int] = {}
        for node in runtime_nodes(tree(name)):
            if isinstance(node, ast.Import | ast.ImportFrom):
                for target, _ in imported(name, node):
                    dep = owner(target)
                    if dep and dep != name:
                        deps.setdefault(dep, node.lineno)
        edges[name] = deps
    return edges


def cycles(edges: dict[str, dict[str, int]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in edges:
        if root in index:
            continue
        work = [(root, iter(edges[root]))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(edges[child])))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
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
    return found


def test_the_checks_see_the_package():
    """Guards the guards: the walk finds the stages and real edges between them."""
    names = modules()
    assert {top(name) for name in names} >= SHARED | STAGES - {"cli"} | {"cli"}
    assert "eta_cli.lake.read" in graph()["eta_cli.train.data"] or any(
        top(dep) == "lake" for dep in graph()["eta_cli.train.data"]
    )
    assert cycles({"a": {"b": 1}, "b": {"c": 1}, "c": {"a": 1}, "d": {"a": 1}}) == [["a", "b", "c"]]


def test_no_import_cycles():
    assert cycles(graph()) == []


def test_shared_modules_never_import_a_stage():
    upward = [
        f"{name} -> {dep} (line {line})"
        for name, deps in graph().items()
        if top(name) in SHARED
        for dep, line in deps.items()
        if top(dep) in STAGES
    ]
    assert upward == []


def test_every_module_sits_in_a_known_layer():
    """A new top-level module must be placed: shared (below the stages) or a stage."""
    others = {"eta_cli", "__main__", "dask_engine", "pyfunc", "synthetic", "validation"}
    unplaced = {top(name) for name in modules()} - SHARED - STAGES - others
    assert unplaced == set()


def test_environment_is_touched_only_in_config():
    """Every environment variable is read (and set) in config.py, where ENV_VARS lists them."""
    found = []
    for name in modules():
        if name == "eta_cli.config":
            continue
        for node in ast.walk(tree(name)):
            text = ast.unparse(node) if isinstance(node, ast.Attribute) else ""
            if text in ("os.environ", "os.getenv", "os.putenv", "os.unsetenv"):
                found.append(f"{name}:{node.lineno} {text}")
            if isinstance(node, ast.ImportFrom) and node.module == "os":
                names = {alias.name for alias in node.names}
                if names & {"environ", "getenv", "putenv", "unsetenv"}:
                    found.append(f"{name}:{node.lineno} from os import {sorted(names)}")
    assert found == []


def test_only_the_commands_write_to_the_terminal():
    found = []
    for name in modules():
        if top(name) in TERMINAL:
            continue
        for node in ast.walk(tree(name)):
            call = isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
            if call and node.func.id == "print":
                found.append(f"{name}:{node.lineno} print(")
            if isinstance(node, ast.Import | ast.ImportFrom):
                for target, _ in imported(name, node):
                    if target == "rich" or target.startswith("rich."):
                        found.append(f"{name}:{node.lineno} imports {target}")
    assert found == []


def test_no_module_imports_another_modules_private_name():
    """``from x import _helper`` couples to what x may change freely: make it public.

    A private module (``commands/_common.py``) is for its own package: its siblings may
    import it, nothing outside.
    """
    found = []
    for name in modules():
        package = name if modules()[name].name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(tree(name)):
            if not isinstance(node, ast.Import | ast.ImportFrom):
                continue
            for target, symbol in imported(name, node):
                module = owner(target)
                if module is None:
                    continue
                if symbol and symbol.startswith("_") and not symbol.startswith("__"):
                    found.append(f"{name}:{node.lineno} imports {symbol} from {module}")
                parent, _, last = module.rpartition(".")
                if last.startswith("_") and not last.startswith("__") and parent != package:
                    found.append(f"{name}:{node.lineno} imports the private module {module}")
    assert found == []


def test_modules_and_functions_stay_readable():
    """No module over 700 lines, no function over 100 (over 80 needs a reason in its
    docstring: that rule is for review, this one is the hard limit)."""
    long = []
    for name, path in modules().items():
        lines = path.read_text(encoding="utf-8").count("\n")
        if lines > MAX_MODULE_LINES:
            long.append(f"{name}: {lines} lines")
        for node in ast.walk(tree(name)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    long.append(f"{name}.{node.name}: {length} lines")
    assert long == []


def test_progress_callbacks_have_one_name():
    """Long calls take ``progress``; no ``on_progress``/``progress_callback`` beside it."""
    found = []
    for name in modules():
        for node in ast.walk(tree(name)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                arguments = node.args.posonlyargs + node.args.args + node.args.kwonlyargs
                found += [
                    f"{name}.{node.name}({argument.arg})"
                    for argument in arguments
                    if "progress" in argument.arg and argument.arg not in ("progress", "_progress")
                ]
    assert found == []
