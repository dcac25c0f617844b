"""The package's import graph: every module imports on its own in a fresh
interpreter, and no two modules import each other at module level (a cycle
makes the import order matter and breaks whoever imports the "wrong" one
first).  Imports inside functions (deliberately lazy ones) are not edges.
"""

import ast
import os
import subprocess
import sys

import pytest

import fastnet  # noqa: E402 -- the fastnet under test: a source tree or an installed wheel

PACKAGE = os.path.dirname(os.path.abspath(fastnet.__file__))
REPO = os.path.dirname(PACKAGE)     # the folder fastnet imports from


def _modules():
    out = {}
    for root, dirs, files in os.walk(PACKAGE):
        dirs[:] = [d for d in dirs if not d.startswith((".", "__"))]
        for f in files:
            if f.endswith(".py"):
                rel = os.path.relpath(os.path.join(root, f), REPO)[:-3].replace(os.sep, ".")
                if rel.endswith(".__init__"):
                    rel = rel[:-len(".__init__")]
                out[rel] = os.path.join(root, f)
    return out


MODULES = _modules()


def _resolve(module, level, name, is_package):
    base = module if is_package else module.rsplit(".", 1)[0]
    for _ in range(level - 1):
        base = base.rsplit(".", 1)[0]
    return base + ("." + name if name else "")


def _module_level_imports(name, path):
    """fastnet modules imported by the top level of ``path`` (not inside a
    function), as module names."""
    tree = ast.parse(open(path).read(), path)
    is_package = path.endswith("__init__.py")
    found = set()

    def visit(nodes):
        for node in nodes:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                continue
            if isinstance(node, ast.Import):
                for a in node.names:
                    if a.name.startswith("fastnet"):
                        found.add(a.name)
            elif isinstance(node, ast.ImportFrom):
                target = (_resolve(name, node.level, node.module, is_package)
                          if node.level else node.module or "")
                if not target.startswith("fastnet"):
                    continue
                for a in node.names:
                    sub = target + "." + a.name
                    found.add(sub if sub in MODULES else target)
            elif isinstance(node, ast.ClassDef):
                visit(node.body)
            elif hasattr(node, "body") and isinstance(getattr(node, "body"), list):
                visit(node.body)
                for extra in ("orelse", "finalbody", "handlers"):
                    visit(getattr(node, extra, []) or [])
    visit(tree.body)
    return {m for m in found if m in MODULES and m != name}


def test_no_module_level_import_cycles():
    graph = {name: _module_level_imports(name, path) for name, path in MODULES.items()}
    # a package's __init__ importing its own submodules is not a cycle of theirs
    def deps(m):
        return {d for d in graph[m] if not (m.startswith(d + ".") and d in graph)}
    cycles = []
    state = {}

    def dfs(m, stack):
        state[m] = 1
        for d in deps(m):
            if state.get(d) == 1:
                cycles.append(stack[stack.index(d):] + [d])
            elif d not in state:
                dfs(d, stack + [d])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            dfs(m, [m])
    assert not cycles, "module-level import cycles: %s" % [" -> ".join(c) for c in cycles]


@pytest.mark.parametrize("module", sorted(m for m in MODULES if ".cuda" not in m
                                          and "sweep" not in m and "keras" not in m
                                          and "plot" not in m))
def test_module_imports_alone(module):
    r = subprocess.run([sys.executable, "-c", "import %s" % module], cwd=REPO,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, "import %s failed alone:\n%s" % (module, r.stderr[-3000:])
