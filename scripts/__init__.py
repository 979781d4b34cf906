"""mmsctl: build, serve and deploy MXNet Model Server archives.

The repository's ``scripts/`` folder is this package (``setup.py`` maps each top-level folder onto a
package of ``mmsctl``: ``handlers/`` -> ``mmsctl.handlers``, ``archives/`` -> ``mmsctl.archives``,
``config/`` -> ``mmsctl.config``, ``docker/`` -> ``mmsctl.docker``). Here: server control (``server``,
``preflight``, ``store``, ``processes``, ``loading``, ``drain``, ``torchserve``), the management and
inference clients, models files, and the subpackages :mod:`mmsctl.cli` (the command line, one module per
command group), :mod:`mmsctl.bench` (benchmarks) and :mod:`mmsctl.metrics` (exporter and health).
"""
__version__ = "0.1.0"
