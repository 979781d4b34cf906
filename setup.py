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
    "mmsctl.bench": "scripts/bench",
    "mmsctl.cli": "scripts/cli",
    "mmsctl.metrics": "scripts/metrics",
    "mmsctl.handlers": "handlers",
    "mmsctl.archives": "archives",
    "mmsctl.config": "config",
    "mmsctl.docker": "docker",
    "mmsctl.docker.ecs": "docker/ecs",
    "mmsctl.docker.k8s": "docker/k8s",
}

HERE = os.path.dirname(os.path.abspath(__file__))


def pinned(*names):
    """The exact pins of requirements/<name>.txt (one source of truth with bootstrap.sh)."""
    pins = []
    for name in names:
        with open(os.path.join(HERE, "requirements", name), encoding="utf-8") as handle:
            pins += [line.split("#", 1)[0].strip() for line in handle if line.split("#", 1)[0].strip()]
    return pins


# mxnet 1.9.1 uses numpy.bool and breaks on numpy>=1.24: the pins keep numpy at 1.23.5.
INSTALL_REQUIRES = pinned("runtime.txt", "onnxruntime.txt")

setup(
    name="mmsctl",
    version="0.1.0",
    description="Build, serve and deploy MXNet Model Server (.mar) archives",
    python_requires=">=3.11,<3.12",
    packages=list(PACKAGES),
    package_dir=PACKAGES,
    package_data={
        "mmsctl.bench": ["reference_handlers/*.py"],
        "mmsctl.config": ["*.properties", "*.json"],
        "mmsctl.docker": ["Dockerfile*", "containers.conf"],
        "mmsctl.docker.ecs": ["*.yaml"],
    },
    install_requires=INSTALL_REQUIRES,
    entry_points={"console_scripts": ["mmsctl = mmsctl.cli:main"]},
)
