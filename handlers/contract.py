"""Names shared by the operator side (``mmsctl``) and the handlers inside archives, defined once.

The operator side imports them from here (``mmsctl.handlers.contract``); the handlers import them
relatively. Nothing here imports anything: this module ships inside every archive.

>>> sorted(name for name in dir() if name.isupper())  # doctest: +NORMALIZE_WHITESPACE
['ENGINE_ENV', 'HANDLER_PACKAGE', 'LOAD_FAILURES_ENV', 'MANIFEST_PATH', 'REQUIRE_DEVICE_ENV',
 'SIGNATURE_FILE', 'THREADS_ENV']
"""

#: The folder inside every archive that holds these handlers (``mmsctl_handlers/``).
HANDLER_PACKAGE = "mmsctl_handlers"
#: The archive's model description, written by ``mmsctl archive``, read by the handler.
SIGNATURE_FILE = "signature.json"
#: MMS's manifest inside a ``.mar`` (model-archiver's layout).
MANIFEST_PATH = "MAR-INF/MANIFEST.json"
#: When set, a worker appends why its model could not load to this file (``mmsctl serve`` reads it).
LOAD_FAILURES_ENV = "MMSCTL_LOAD_FAILURES"
#: The device a profile requires (cpu, gpu, eia); a worker that cannot get it refuses to load.
REQUIRE_DEVICE_ENV = "MMSCTL_REQUIRE_DEVICE"
#: Engine preference: auto, mxnet, onnxruntime, or MODEL=ENGINE pairs.
ENGINE_ENV = "MMSCTL_ENGINE"
#: Threads per model on a server with several models: MODEL=N pairs (the plan of the core budget).
THREADS_ENV = "MMSCTL_THREADS"
