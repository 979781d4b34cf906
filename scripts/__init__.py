"""mmsctl: build, serve and deploy MXNet Model Server archives.

The command line (``mmsctl``) lives in :mod:`mmsctl.cli`; each subcommand is a
thin layer over the library modules of this package and its subpackages.
"""
__version__ = "0.1.0"
