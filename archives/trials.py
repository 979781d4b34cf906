"""Build-time forward passes of an ONNX model, in a child process with a time limit.

The builder runs a model on made-up inputs (zeros, random rows) to find out whether it is
batchable (``batching.classify``) or, for an image classifier, how many classes it has.
Made-up inputs can crash onnxruntime's kernels: a Col2Im fed zeros as its image and block
shapes divides by them (SIGFPE, the whole process dies without a word), and a graph whose
input is a shape may fail or run for ever on an invented one. So the passes run in a child
process; the builder itself never crashes or hangs:

* onnxruntime cannot load the model (it raises, or the child dies while loading): the model
  is refused, naming the operator sets;
* a pass on made-up inputs fails, crashes or runs past the time limit: a tensor model is
  archived as not batchable with the reason recorded (``example_shapes`` is ``None``: the
  worker does not warm up on made-up inputs either); an image classifier, which must run
  on an image of zeros, is refused with the reason.
"""
import faulthandler
import multiprocessing
import signal
import time

from .errors import InvalidInput

#: Seconds the build-time passes of one model may take, loading included.
DEFAULT_TIMEOUT = 120.0

LOADED, DONE, REFUSED, FAILED = "loaded", "done", "refused", "failed"


def ort_module():
    try:
        import onnxruntime
    except ImportError:
        raise InvalidInput("onnxruntime is not installed: pip install --no-deps -r requirements/onnxruntime.txt")
    return onnxruntime


def first_line(err):
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def onnxruntime_runner(model_bytes, path, imports=""):
    """A function ``feeds -> {output name: array}`` running one onnxruntime session on the CPU.

    ``imports`` (see :func:`opsets`) is named when onnxruntime cannot load the model.
    """
    ort = ort_module()
    options = ort.SessionOptions()
    options.log_severity_level = 4  # failures are reported by the exceptions, in one line
    try:
        session = ort.InferenceSession(model_bytes, sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime raises its own Fail/NotImplemented/InvalidGraph types
        raise InvalidInput("onnxruntime %s cannot load %s%s: %s" % (
            ort.__version__, path, " (operator sets %s)" % imports if imports else "", first_line(err)))
    names = [out.name for out in session.get_outputs()]

    def run(feeds):
        try:
            values = session.run(names, feeds)
        except Exception as err:
            detail = "failed on inputs %s: %s" % (", ".join("%s%s" % (k, list(v.shape)) for k, v in feeds.items()),
                                                  first_line(err))
            failure = InvalidInput("a forward pass of %s with onnxruntime %s" % (path, detail))
            failure.detail = detail  # without the path, for signature.json
            raise failure
        return dict(zip(names, values))
    return run


def _context():
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods else "spawn")


def _child(conn, job, args):
    faulthandler.disable()  # a crash is reported by the parent, in one line (pytest enables it in its children)
    try:
        model_bytes, path, imports = args[:3]
        try:
            run = onnxruntime_runner(model_bytes, path, imports)
        except InvalidInput as err:
            conn.send((REFUSED, str(err)))
            return
        conn.send((LOADED, None))
        try:
            conn.send((DONE, job(run, *args[3:])))
        except InvalidInput as err:
            conn.send((FAILED, getattr(err, "detail", None) or str(err)))
    except Exception as err:  # noqa: BLE001 - anything else is a failed trial, said in one line
        conn.send((FAILED, "%s: %s" % (type(err).__name__, str(err).strip().splitlines()[0] if str(err).strip()
                                       else "")))
    finally:
        conn.close()


def _signal_name(code):
    try:
        return signal.Signals(-code).name
    except ValueError:
        return "signal %d" % -code


def run(job, model_bytes, path, imports, *args, timeout=DEFAULT_TIMEOUT):
    """``(DONE, result)`` or ``(FAILED, reason)`` of ``job(run, *args)`` in a child process, ``run`` being
    the onnxruntime runner of the model. Raises InvalidInput when onnxruntime cannot load the model."""
    context = _context()
    parent, child_end = context.Pipe(duplex=False)
    process = context.Process(target=_child, args=(child_end, job, (model_bytes, path, imports) + args),
                              daemon=True)
    process.start()
    child_end.close()
    deadline = time.monotonic() + timeout
    loaded = False
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return FAILED, "the build-time forward passes on made-up inputs took more than %.0f s" % timeout
            if parent.poll(min(left, 0.5)):
                try:
                    kind, value = parent.recv()
                except EOFError:  # the child died
                    break
                if kind == LOADED:
                    loaded = True
                    continue
                if kind == REFUSED:
                    raise InvalidInput(value)
                return kind, value
            if not process.is_alive() and not parent.poll(0):
                break
        process.join(5)
        code = process.exitcode
        how = "was killed by %s" % _signal_name(code) if code is not None and code < 0 else "exited with status %s" % code
        if not loaded:
            suffix = " (operator sets %s)" % imports if imports else ""
            raise InvalidInput("onnxruntime cannot load %s%s: the process loading it %s" % (path, suffix, how))
        return FAILED, "onnxruntime %s on made-up inputs (a kernel that needs real values, such as a shape or a " \
                       "size to divide by)" % how.replace("was killed by", "crashed with")
    finally:
        if process.is_alive():
            process.kill()
        process.join(5)
        parent.close()
