"""MMS service handlers.

This package is copied verbatim into every archive (as ``mmsctl_handlers/``) so a
``.mar`` runs on a stock ``multi-model-server`` with only numpy, Pillow and the
model's engine installed. Keep it free of imports from the rest of ``mmsctl``.

``base`` is the handler template; ``image_classifier`` and ``tensor_model`` are the tasks; ``codec``,
``imaging`` and ``v2`` read requests; ``engines`` (with ``engine_choice``, ``mxnet_engine``,
``onnx_engine``) runs the forward pass; ``devices`` and ``threads`` choose the device and the thread
count; ``contract`` names what the operator side and the handlers share (the operator side imports it
as ``mmsctl.handlers.contract``).
"""
