"""Observability of a served MMS: a Prometheus exporter with /healthz and /readyz
(``exporter``), CloudWatch EMF lines (``emf``) and ``mmsctl top`` (``top``), fed
by the logs MMS writes with mmsctl's own log4j2 layout (``logconfig``).

This package's root imports nothing: ``mmsctl.server`` imports ``logconfig``.
"""
