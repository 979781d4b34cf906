"""The shape of the code: every module's doctests run, and the handlers never import the operator side."""
import ast
import doctest
import importlib
import os
import pkgutil

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
        for info in pkgutil.iter_modules(path, package + "."):
            if not info.name.endswith("__main__"):
                names.add(info.name)
    return sorted(names)


MODULES = product_modules()


def test_the_package_walk_finds_every_folder():
    assert {"mmsctl.cli", "mmsctl.cli.serve", "mmsctl.server", "mmsctl.handlers.base", "mmsctl.archives.mar",
            "mmsctl.config.profiles", "mmsctl.docker.ecs"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
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



def test_test_modules_import_helpers_not_conftest():
    modules = [name for name in os.listdir(os.path.join(REPO, "tests")) if name.startswith("test_")]
    assert len(modules) > 10
    for name in modules:
        assert "conftest" not in set(imported_modules(os.path.join(REPO, "tests", name))), \
            "tests/%s imports conftest: shared test code lives in tests/helpers.py" % name


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
