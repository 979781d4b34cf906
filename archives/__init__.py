"""``archives/``: validate inputs, then write MMS ``.mar`` archives.

Builders per kind of checkpoint (``mxnet_checkpoint``, ``onnx_model`` with ``onnx_signature`` and
``batching``, ``efficientnet_lite`` with ``torch_legacy``), the format (``builder``: entries, manifest and
signature; ``mar``: reading, safe extraction, inspect), and ``errors``.
"""
