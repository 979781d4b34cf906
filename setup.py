"""Packaging for mmsctl: build, serve and ship MXNet Model Server archives.

The repository keeps one top-level folder per part of the product (handlers/,
archives/, config/, scripts/, docker/); setup.py maps each onto a subpackage of
``mmsctl`` so that the installed names never clash with other distributions.
Pinned versions live in requirements/*.txt; install through scripts/bootstrap.sh.
"""
import os

from setuptools import setup

PACKAGES = {
    "mmsctl": "scripts",
    "mmsctl.handlers": "handlers",
    "mmsctl.archives": "archives",
    "mmsctl.config": "config",
    "mmsctl.docker": "docker",
}

HERE = os.path.dirname(os.path.abspath(__file__))


def pinned(*names):
    """The exact pins of requirements/<name>.txt (one source of truth with bootstrap.sh)."""
    pins = []
    for name in names:
        with open(os.path.join(HERE, "requirements", name), encoding="utf-8") as handle:
            pins += [line.split("#", 1)[0].strip() for line in handle if line.split("#", 1)[0].strip()]
    return pins


def packages():
    """PACKAGES and every folder below them with an ``__init__.py`` (scripts/bench -> mmsctl.bench)."""
    found = []
    for package, folder in PACKAGES.items():
        for root, dirs, files in os.walk(os.path.join(HERE, folder)):
            dirs[:] = sorted(d for d in dirs if d != "__pycache__")
            if "__init__.py" in files:
                relative = os.path.relpath(root, os.path.join(HERE, folder))
                found.append(package if relative == "." else package + "." + relative.replace(os.sep, "."))
    return found


# mxnet 1.9.1 uses numpy.bool and breaks on numpy>=1.24: the pins keep numpy at 1.23.5.
INSTALL_REQUIRES = pinned("runtime.txt", "onnxruntime.txt")

setup(
    name="mmsctl",
    version="0.1.0",
    description="Build, serve and deploy MXNet Model Server (.mar) archives",
    python_requires=">=3.11,<3.12",
    packages=packages(),
    package_dir=PACKAGES,
    package_data={
        "mmsctl.bench": ["reference_handlers/*.py"],
        "mmsctl.config": ["*.properties", "*.json"],
        "mmsctl.docker": ["Dockerfile*", "ecs/*", "containers.conf"],
    },
    install_requires=INSTALL_REQUIRES,
    entry_points={"console_scripts": ["mmsctl = mmsctl.cli:main"]},
)
