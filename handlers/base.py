"""The handler template: initialize / preprocess / inference / postprocess / handle.

``handle`` is fixed; a task (image classification, tensors) overrides
``preprocess`` (one part -> one model input) and ``postprocess`` (one model output
-> a JSON-able answer); the engine (MXNet, onnxruntime) does the forward pass.
No state is kept between requests: everything ``handle`` learns about a request
lives in its local variables.
"""
import functools
import json
import logging
import os
import time
from http import HTTPStatus

from . import codec
from .contract import LOAD_FAILURES_ENV, SIGNATURE_FILE
from .errors import BadRequest, HandlerError, ModelLoadFailure
from .threads import apply_model_threads

logger = logging.getLogger(__name__)

def load_signature(model_dir):
    """Read the archive's ``signature.json`` (written by ``mmsctl archive``)."""
    path = os.path.join(model_dir, SIGNATURE_FILE)
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except FileNotFoundError:
        raise ModelLoadFailure("%s is missing: rebuild the archive with `mmsctl archive`" % path)
    except ValueError as err:
        raise ModelLoadFailure("%s is not valid JSON: %s" % (path, err))


def record_load_failure(message, environ=None):
    """Log why the model cannot load, and append it to ``$MMSCTL_LOAD_FAILURES`` when set.

    MMS 1.1.11's forked worker exits through ``sys.exit(0)`` in a ``finally``,
    which swallows the exception, and the frontend may stop reading a dying
    worker's output before its last lines; ``mmsctl serve`` sets the variable to a
    file in its logs folder and reports what is there.
    """
    environ = os.environ if environ is None else environ
    logger.error("ModelLoadFailure: %s", message)
    path = environ.get(LOAD_FAILURES_ENV)
    if path:
        try:
            with open(path, "a", encoding="utf-8") as handle:
                handle.write("ModelLoadFailure: %s\n" % message)
        except OSError as err:
            logger.error("cannot append to %s=%s: %s", LOAD_FAILURES_ENV, path, err)


class BaseHandler:
    """Template of every mmsctl handler; subclasses define preprocess/postprocess.

    ``engine_factory(signature, model_dir, system_properties)`` builds the engine;
    tests inject their own, MMS uses the default from ``engines``.
    """

    def __init__(self, engine_factory=None):
        self._engine_factory = engine_factory
        self.engine = None
        self.signature = None
        self.model_name = None

    # -- lifecycle -----------------------------------------------------------
    def initialize(self, context):
        """Load the model and run one warm-up forward; fail loudly on any error."""
        properties = context.system_properties
        model_dir = properties.get("model_dir")
        self.model_name = getattr(context, "model_name", None) or os.path.basename(model_dir or "")
        try:
            started = time.monotonic()
            apply_model_threads(self.model_name)  # before any engine imports MXNet or onnxruntime
            self.signature = load_signature(model_dir)
            self.setup(self.signature, model_dir)
            factory = self._engine_factory
            if factory is None:
                from .engines import create_engine
                factory = functools.partial(create_engine, model_name=self.model_name)
            self.engine = factory(self.signature, model_dir, properties)
            self.warm_up()
            logger.info("model %s ready on %s in %.2f s", self.model_name, self.engine.device_description,
                        time.monotonic() - started)
        except ModelLoadFailure as err:
            record_load_failure(err.message)
            raise
        except Exception as err:  # everything else becomes a load failure MMS cannot swallow
            logger.exception("model %s failed to load", self.model_name)
            failure = ModelLoadFailure("model %s in %s failed to load: %s: %s"
                                       % (self.model_name, model_dir, type(err).__name__, err))
            record_load_failure(failure.message)
            raise failure from err

    def setup(self, signature, model_dir):
        """Read task-specific files (labels...) before the engine loads."""

    def warm_up(self):
        """Pay for lazy set-up before the first request: by default one forward on zeros."""
        self.engine.warm_up()

    def preprocess(self, part):
        """One request part -> one model input; raise HandlerError for bad input."""
        raise NotImplementedError

    def inference(self, inputs):
        """A list of model inputs -> a list of model outputs, in order."""
        return self.engine.forward(inputs)

    def postprocess(self, output):
        """One model output -> a JSON-able answer."""
        raise NotImplementedError

    def answer(self, parts, results):
        """Shape the answer of one request from its parts' results.

        A plain body answers its one result; multipart answers a list in the
        parts' order, with an error object in place of any part that failed.
        """
        if codec.is_single_body(parts):
            return results[0]
        return results

    # -- the fixed template ----------------------------------------------------
    def handle(self, data, context):
        """Answer one MMS batch: a list of requests in, a list of JSON strings out."""
        if data is None:  # MMS calls function entry points with None at load time
            return None
        batch = []  # per request: (parts, [result or HandlerError per part]) or HandlerError
        pending = []  # (request index, part index, model input)
        for idx, request in enumerate(data):
            try:
                parts = codec.request_parts(request, _request_headers(context, idx))
            except HandlerError as err:
                batch.append(err)
                continue
            results = []
            for pos, part in enumerate(parts):
                try:
                    pending.append((idx, pos, self.preprocess(part)))
                    results.append(None)
                except HandlerError as err:
                    results.append(err)
            batch.append((parts, results))

        if pending:
            try:
                outputs = self.inference([item for _, _, item in pending])
                for (idx, pos, _), output in zip(pending, outputs):
                    try:
                        batch[idx][1][pos] = self.postprocess(output)
                    except HandlerError as err:  # this part's own failure (inference may return one)
                        batch[idx][1][pos] = err
            except HandlerError as err:
                for idx, pos, _ in pending:
                    batch[idx][1][pos] = err
            except Exception as err:  # an engine failure answers 500 for the affected requests only
                logger.exception("inference failed for model %s", self.model_name)
                failure = HandlerError("inference failed: %s: %s" % (type(err).__name__, err), 500)
                for idx, pos, _ in pending:
                    batch[idx][1][pos] = failure

        return [self._respond(context, idx, entry) for idx, entry in enumerate(batch)]

    def _respond(self, context, idx, entry):
        if isinstance(entry, HandlerError):
            return _error_response(context, idx, entry)
        parts, results = entry
        errors = [r for r in results if isinstance(r, HandlerError)]
        if errors and len(errors) == len(results):
            if len(errors) == 1:
                return _error_response(context, idx, errors[0])
            first = errors[0]
            combined = HandlerError("no part of the request could be used: " + "; ".join(
                "%s: %s" % (p.name, e.message) for p, e in zip(parts, errors)), first.status)
            return _error_response(context, idx, combined)
        shaped = [r.to_json() if isinstance(r, HandlerError) else r for r in results]
        _set_status(context, idx, 200, "OK")
        return json.dumps(self.answer(parts, shaped))


def _request_headers(context, idx):
    getter = getattr(context, "get_all_request_header", None)
    if getter is None:
        return {}
    try:
        return getter(idx) or {}
    except (IndexError, KeyError, TypeError, AttributeError):
        return {}


def _set_status(context, idx, code, phrase):
    setter = getattr(context, "set_response_status", None)
    if setter is not None:
        setter(code=code, phrase=phrase, idx=idx)
    ctype = getattr(context, "set_response_content_type", None)
    if ctype is not None:
        ctype(idx, "application/json")


def _error_response(context, idx, error):
    try:
        phrase = HTTPStatus(error.status).phrase
    except ValueError:
        phrase = "Error"
    _set_status(context, idx, error.status, phrase)
    return json.dumps(error.to_json())


__all__ = ["BaseHandler", "BadRequest", "load_signature"]
