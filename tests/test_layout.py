"""The package's layout keeps the directions of a pipeline: no import cycle, later stages import
earlier ones and not the reverse, the report reads files without torch, tools use public names.

Reads the source with `ast` (imports inside functions count, `if TYPE_CHECKING:` blocks do not):
nothing of the package is imported, so a broken direction fails here before it fails anywhere.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "peftsum"


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted((SRC / PACKAGE).rglob("*.py"))}
TREES = {name: ast.parse(path.read_text(), str(path)) for name, path in MODULES.items()}


def runtime_nodes(tree: ast.AST):
    """Every node that runs: all but the bodies of `if TYPE_CHECKING:`."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for other in node.orelse:
                yield other
                yield from runtime_nodes(other)
            continue
        yield node
        yield from runtime_nodes(node)


def absolute(module: str, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    is_package = MODULES[module].name == "__init__.py"
    base = module.split(".")[: len(module.split(".")) - node.level + is_package]
    return ".".join(base + ([node.module] if node.module else []))


def imports(module: str) -> set[str]:
    """Everything `module` imports: a package's submodule where `from package import name` names
    one, else the module named."""
    found = set()
    for node in runtime_nodes(TREES[module]):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            source = absolute(module, node)
            for alias in node.names:
                sub = f"{source}.{alias.name}"
                found.add(sub if sub in MODULES else source)
    return found


def internal(module: str) -> set[str]:
    return {name for name in imports(module) if name in MODULES and name != module}


def in_folder(folder: str) -> list[str]:
    prefix = f"{PACKAGE}.{folder}"
    return [name for name in MODULES if name == prefix or name.startswith(prefix + ".")]


def reachable(module: str) -> set[str]:
    """The modules of the package that importing `module` runs: its imports, theirs, and the
    packages (__init__) above each."""
    seen, todo = set(), [module]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        parents = [".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)]
        todo.extend(internal(name) | set(parents))
    return seen


def cycles() -> list[list[str]]:
    """The package's import cycles, each as the path that closes it (depth-first search)."""
    found, state = [], {}

    def visit(name: str, path: list[str]) -> None:
        state[name] = "open"
        for other in sorted(internal(name)):
            if state.get(other) == "open":
                found.append(path[path.index(other):] + [name, other])
            elif other not in state:
                visit(other, path + [name])
        state[name] = "done"

    for name in MODULES:
        if name not in state:
            visit(name, [])
    return found


def test_the_walk_sees_imports_inside_functions():
    """A guard on the guard: an import inside a function body counts as an import."""
    assert "peftsum.report.explorer" in internal("peftsum.stages")  # imported in a function
    assert "peftsum.methods.adapters" in internal("peftsum.methods.lora")  # `from pkg import mod`


def test_no_import_cycle():
    assert cycles() == []


@pytest.mark.parametrize("importer, forbidden", [
    ("methods", ("training", "evaluation")),  # the loop asks the method, not the reverse
    ("training", ("evaluation",)),  # the validation loss lives with the loss
    ("data", ("methods", "training", "evaluation")),  # a soft prompt is a number of positions
])
def test_stages_import_in_one_direction(importer, forbidden):
    wrong = {(name, other) for name in in_folder(importer) for other in internal(name)
             if any(other in in_folder(folder) for folder in forbidden)}
    assert wrong == set()


@pytest.mark.parametrize("folder", ["analysis", "report"])
def test_results_are_read_without_torch(folder):
    """The report is re-rendered from copied results on a machine without torch: nothing it
    imports, directly or through the package, needs torch or transformers."""
    heavy = ("torch", "transformers", "peft")
    wrong = {(name, other) for start in in_folder(folder) for name in reachable(start)
             for other in imports(name) if other.split(".")[0] in heavy}
    assert wrong == set()


def private_names() -> dict[str, set[str]]:
    """Per module of the package, the private names it defines: functions, classes, assignments
    and methods (`_step` of a class), but not dunders."""
    names = {}
    for module, tree in TREES.items():
        defined = set()
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                defined.add(node.name)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                defined.add(node.id)
        names[module] = {n for n in defined if n.startswith("_") and not n.startswith("__")}
    return names


def test_tools_use_public_names_only():
    """tools/ measure and check what the package does through its public API: no private name
    of another module imported, read or replaced (`trainer._step = ...`)."""
    tools = in_folder("tools")
    others = set().union(*(names for module, names in private_names().items()
                           if module not in tools))
    wrong = set()
    for module in tools:
        for node in runtime_nodes(TREES[module]):
            if isinstance(node, ast.ImportFrom) and absolute(module, node).startswith(PACKAGE):
                wrong.update((module, a.name) for a in node.names if a.name in others)
            elif (isinstance(node, ast.Attribute) and node.attr in others
                  and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))):
                wrong.add((module, ast.unparse(node)))
    assert wrong == set()


def test_no_module_imports_a_private_name_of_another():
    """Modules meet through public names: a `_name` imported from elsewhere is a helper that
    should have been made public, or moved."""
    wrong = {(module, f"{absolute(module, node)}.{alias.name}")
             for module in MODULES for node in runtime_nodes(TREES[module])
             if isinstance(node, ast.ImportFrom) and absolute(module, node).startswith(PACKAGE)
             for alias in node.names
             if alias.name.startswith("_") and not alias.name.startswith("__")}
    assert wrong == set()
