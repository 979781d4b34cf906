"""The shape of the code: every module's doctests run, and the handlers never import the operator side."""
import ast
import doctest
import glob
import importlib
import os
import pkgutil
import re

import pytest

from helpers import REPO

pytestmark = pytest.mark.unit


def setup_packages():
    """setup.py's {package: folder} map, read from its source (one source of truth)."""
    tree = ast.parse(open(os.path.join(REPO, "setup.py"), encoding="utf-8").read())
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "PACKAGES":
            return ast.literal_eval(node.value)
    raise AssertionError("setup.py has no PACKAGES map")


def product_modules():
    """Every module of every package setup.py installs."""
    names = set()
    for package in setup_packages():
        names.add(package)
        path = importlib.import_module(package).__path__
        for info in pkgutil.walk_packages(path, package + "."):
            if not info.name.endswith("__main__"):
                names.add(info.name)
    return sorted(names)


MODULES = product_modules()


def test_the_package_walk_finds_every_folder():
    assert {"mmsctl.cli", "mmsctl.cli.serve", "mmsctl.server", "mmsctl.handlers.base", "mmsctl.archives.mar",
            "mmsctl.config.profiles", "mmsctl.docker.ecs"} <= set(MODULES)


def module_source(name):
    """The source text of a product module, found from setup.py's map without importing it."""
    packages = setup_packages()
    package = max((p for p in packages if name == p or name.startswith(p + ".")), key=len)
    rest = name[len(package):].lstrip(".")
    path = os.path.join(REPO, packages[package], *rest.split(".")) if rest else os.path.join(REPO, packages[package])
    path = os.path.join(path, "__init__.py") if os.path.isdir(path) else path + ".py"
    with open(path, encoding="utf-8") as handle:
        return handle.read()


#: the modules whose source holds a doctest example (a ">>>" line); the others have none to run
DOCTESTED = [name for name in MODULES if any(line.lstrip().startswith(">>>")
                                             for line in module_source(name).splitlines())]


def test_doctested_modules_are_found():
    assert len(DOCTESTED) > 20 and {"mmsctl.files", "mmsctl.cli.common", "mmsctl.handlers.contract"} <= set(DOCTESTED)


@pytest.mark.parametrize("name", DOCTESTED)
def test_doctests(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0, "%s has a '>>>' line that doctest does not run" % name
    assert result.failed == 0


def imported_modules(path):
    """Absolute module names a file imports (relative imports are within its own package)."""
    tree = ast.parse(open(path, encoding="utf-8").read(), path)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module


def test_handlers_never_import_the_operator_side():
    folder = os.path.join(REPO, "handlers")
    sources = [name for name in os.listdir(folder) if name.endswith(".py")]
    assert len(sources) > 10
    for name in sources:
        bad = [module for module in imported_modules(os.path.join(folder, name))
               if module.split(".")[0] in ("mmsctl", "scripts", "archives", "config", "docker")]
        assert not bad, "handlers/%s imports %s: handlers run inside MMS on their own" % (name, bad)



#: what starts a server by hand inside a test function (the ``servers`` fixture marks its tests itself)
HAND_STARTED_SERVER = re.compile(r"\bstart_(stock|plain)_mms\(|\bserve_foreground\(|scripts/quickstart\.sh"
                                 r"|Popen\(\s*\[[^\]]*[\"']serve[\"']")


def test_tests_that_start_a_server_by_hand_are_marked_server():
    checked = []
    for path in sorted(glob.glob(os.path.join(REPO, "tests", "test_*.py"))):
        source = open(path, encoding="utf-8").read()
        tree = ast.parse(source, path)
        module_marks = set()
        for node in tree.body:
            if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "pytestmark":
                module_marks = set(re.findall(r"mark\.(\w+)", ast.get_source_segment(source, node)))
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_") \
                    and HAND_STARTED_SERVER.search(ast.get_source_segment(source, node)):
                marks = module_marks | {d.attr for d in node.decorator_list if isinstance(d, ast.Attribute)}
                checked.append(node.name)
                assert "server" in marks, "%s::%s starts a server: mark it server" % (os.path.basename(path),
                                                                                       node.name)
    assert {"test_archives_run_on_stock_multi_model_server", "test_onnxruntime_archives_serve_without_mxnet",
            "test_readme_commands_in_order_in_a_fresh_clone"} <= set(checked)


def test_test_modules_import_helpers_not_conftest():
    modules = [name for name in os.listdir(os.path.join(REPO, "tests")) if name.startswith("test_")]
    assert len(modules) > 10
    for name in modules:
        assert "conftest" not in set(imported_modules(os.path.join(REPO, "tests", name))), \
            "tests/%s imports conftest: shared test code lives in tests/helpers.py" % name


def module_files():
    """{module name: source file} for every product module: setup.py's folders and, recursively, their
    subpackages (folders with an ``__init__.py``, e.g. scripts/bench/ -> mmsctl.bench)."""
    files = {}
    for package, top in setup_packages().items():
        for folder, dirs, names in os.walk(os.path.join(REPO, top)):
            dirs[:] = [d for d in dirs if os.path.isfile(os.path.join(folder, d, "__init__.py"))]
            relative = os.path.relpath(folder, os.path.join(REPO, top))
            here = package if relative == "." else package + "." + relative.replace(os.sep, ".")
            for name in names:
                if name.endswith(".py"):
                    stem = name[:-3]
                    files[here if stem == "__init__" else "%s.%s" % (here, stem)] = os.path.join(folder, name)
    return files


def import_graph():
    """{module: set of product modules it imports anywhere in its source, functions included}."""
    files = module_files()
    graph = {}
    for module, path in files.items():
        package = module if path.endswith("__init__.py") else module.rsplit(".", 1)[0]
        targets = set()
        for node in ast.walk(ast.parse(open(path, encoding="utf-8").read(), path)):
            if isinstance(node, ast.Import):
                bases, names = [alias.name for alias in node.names], []
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parent = package.split(".")
                    parent = parent[:len(parent) - node.level + 1]
                    base = ".".join(parent + ([base] if base else []))
                bases, names = [base], [alias.name for alias in node.names]
            else:
                continue
            for base in bases:
                found = [base + "." + name for name in names if base + "." + name in files]
                targets.update(found or ([base] if base in files else []))
        targets.discard(module)
        graph[module] = targets
    return graph


def cycles(graph):
    """The strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_among_the_products_modules():
    graph = import_graph()
    assert {"mmsctl.bench.stats", "mmsctl.bench.load"} <= graph["mmsctl.bench.run"]
    assert graph["mmsctl.cli"] and "mmsctl.handlers.contract" in graph["mmsctl.archives.mar"]
    assert cycles(graph) == []


#: Modules allowed over MAX_LINES, and why.
LONG_MODULES = {}
MAX_LINES = 500


def test_no_product_module_is_over_500_lines():
    lengths = {module: sum(1 for _ in open(path, encoding="utf-8")) for module, path in module_files().items()}
    assert len(lengths) > 40 and "mmsctl.bench.load" in lengths
    assert {module: n for module, n in lengths.items() if n > MAX_LINES and module not in LONG_MODULES} == {}


def test_the_benchmark_imports_run_one_way():
    """stats and load at the bottom of mmsctl.bench: they import nothing above them."""
    graph = import_graph()
    bench = {module for module in graph if module.startswith("mmsctl.bench.")}
    assert graph["mmsctl.bench.stats"] & bench == set()
    assert graph["mmsctl.bench.load"] & bench == {"mmsctl.bench.errors"}


def test_no_import_inside_a_function_except_heavy_optional_libraries():
    """Imports inside functions hid the old bench/inprocess/sweep cycle: only heavy optional libraries may."""
    heavy = ("mxnet", "onnx", "onnxruntime", "matplotlib", "torch")
    found = []
    for module, path in module_files().items():
        if not module.startswith("mmsctl.bench"):
            continue
        for node in ast.walk(ast.parse(open(path, encoding="utf-8").read(), path)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for inner in ast.walk(node):
                    if isinstance(inner, ast.Import):
                        names = [alias.name for alias in inner.names]
                    elif isinstance(inner, ast.ImportFrom):
                        names = ["." * inner.level + (inner.module or "")]
                    else:
                        continue
                    found += ["%s: %s" % (module, name) for name in names if name.split(".")[0] not in heavy]
    assert found == []

def test_setup_installs_every_package_folder():
    """A folder with an ``__init__.py`` under the product's folders is a package setup.py must list."""
    listed = set(setup_packages().values())
    found = set()
    for top in ("scripts", "handlers", "archives", "config", "docker"):
        for folder, dirs, files in os.walk(os.path.join(REPO, top)):
            dirs[:] = [d for d in dirs if not d.startswith((".", "__"))]
            if "__init__.py" in files:
                found.add(os.path.relpath(folder, REPO))
    assert {"scripts", "scripts/cli", "handlers"} <= found
    assert found == listed
