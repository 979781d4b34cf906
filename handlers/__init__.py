"""MMS service handlers.

This package is copied verbatim into every archive (as ``mmsctl_handlers/``) so a
``.mar`` runs on a stock ``multi-model-server`` with only numpy, Pillow and the
model's engine installed. Keep it free of imports from the rest of ``mmsctl``.
"""
