"""The independent in-process limit: the best this machine does with an archive's weights.

The limit does not run the archive's engine choice. One child process
(``python -m mmsctl.bench.limit``, every vCPU as OpenMP / intra-op threads) runs each
engine that can run the archive's weights:

* ``mxnet``: the archive's MXNet checkpoint, fused by MXNet's MKLDNN subgraph
  backend (``SymbolBlock.optimize_for``), written here with MXNet's own API;
* ``onnxruntime``: the archive's ONNX model (dual archives carry both); for an
  MXNet-only archive the checkpoint is exported to ONNX first, and when that fails
  the engine is reported unavailable with the reason.

Every request runs the newest decode and resize installed here (``mmsctl.handlers.imaging``:
OpenCV where installed, Pillow's crop-only resize), with the archive's preprocessing
spec, whatever handler code the archive carries (a yardstick never uses less than the
machine has), then the forward pass and the answer (softmax, top-k, JSON), each timed
on its own. Engines run one after the other,
never side by side. The fastest engine (p50 of the whole request) is the limit.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings

import numpy as np

from mmsctl.archives import mar, onnx_model
from mmsctl.config.profiles import detect_vcpus
from mmsctl.handlers import imaging, topk  # the newest decoder here, not the archive's copy
from mmsctl.handlers.contract import SIGNATURE_FILE

from mmsctl.errors import UsageError

from .breakdown import best_engine
from .errors import BenchError
from .stats import percentile

ENGINES = ("mxnet", "onnxruntime")
#: requests per input when the load is given as a duration
DEFAULT_REQUESTS = 20
PARTS = ("preprocess_ms", "forward_ms", "postprocess_ms", "total_ms")


# -- the child ------------------------------------------------------------------------------------
def _engine_entries(signature):
    entries = signature.get("engines") or [signature.get("engine") or {}]
    return {entry.get("name"): entry for entry in entries}


def _mxnet_forward(model_dir, entry, input_name, shape):
    import mxnet as mx
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        net = mx.gluon.nn.SymbolBlock.imports(os.path.join(model_dir, entry["symbol"]), [input_name],
                                              os.path.join(model_dir, entry["params"]), ctx=mx.cpu())
    net.optimize_for(mx.nd.zeros(shape), backend="MKLDNN", static_alloc=True, static_shape=True)

    def forward(array):
        out = net(mx.nd.array(array[np.newaxis]))
        return (out[0] if isinstance(out, (list, tuple)) else out).asnumpy()[0]
    return forward, "MXNet %s, SymbolBlock.optimize_for(backend=MKLDNN), %s threads" % (
        mx.__version__, os.environ.get("OMP_NUM_THREADS", "?"))


def _onnx_path(model_dir, entries, input_name, shape, tmp):
    """(path of an ONNX model of the archive's weights, how it was obtained)."""
    if "onnxruntime" in entries:
        return os.path.join(model_dir, entries["onnxruntime"]["model"]), "the archive's ONNX model"
    mxnet = entries.get("mxnet")
    if mxnet is None:
        raise UsageError("the archive has neither an ONNX model nor an MXNet checkpoint")
    path = os.path.join(tmp, "export.onnx")
    onnx_model.export_mxnet_checkpoint(os.path.join(model_dir, mxnet["symbol"]),
                                       os.path.join(model_dir, mxnet["params"]), input_name, list(shape), path)
    return path, "exported here from the archive's MXNet checkpoint (MXNet-only archive)"


def _onnxruntime_forward(path, threads):
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(path, sess_options=options, providers=["CPUExecutionProvider"])
    name, output = session.get_inputs()[0].name, session.get_outputs()[0].name

    def forward(array):
        return session.run([output], {name: array[np.newaxis]})[0][0]
    return forward, "onnxruntime %s, ORT_ENABLE_ALL, %d intra-op threads" % (ort.__version__, threads)


def _measure(forward, bodies, imaging, topk, spec, labels, k, softmax, requests, warmup):
    """{input: {parts' p50, rps, top1}} of ``requests`` sequential requests per input."""
    results = {}
    for key, body in bodies.items():
        samples = []
        for index in range(warmup + requests):
            t0 = time.perf_counter()
            array = imaging.preprocess(body, spec)
            t1 = time.perf_counter()
            scores = forward(array)
            t2 = time.perf_counter()
            scores = np.asarray(scores, dtype=np.float64).reshape(-1)
            answer = json.dumps(topk.top_k(topk.softmax(scores) if softmax else scores, labels, k))
            t3 = time.perf_counter()
            if index >= warmup:
                samples.append(((t1 - t0) * 1e3, (t2 - t1) * 1e3, (t3 - t2) * 1e3, (t3 - t0) * 1e3))
        elapsed_ms = sum(sample[3] for sample in samples)
        entry = {part: percentile([sample[i] for sample in samples], 50) for i, part in enumerate(PARTS)}
        entry.update({"requests": len(samples), "rps": len(samples) / (elapsed_ms / 1e3) if elapsed_ms else None,
                      "top1": json.loads(answer)[0]["class"]})
        results[key] = entry
    return results


def child_main(argv=None):
    """``python -m mmsctl.bench.limit``: measure every engine; one JSON object on stdout."""
    parser = argparse.ArgumentParser(prog="python -m mmsctl.bench.limit")
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--input", action="append", required=True)
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--engines", default=",".join(ENGINES))
    args = parser.parse_args(argv)
    channel = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # framework banners go to the log, the result alone to stdout
    model_dir = os.path.realpath(args.model_dir)
    with open(os.path.join(model_dir, SIGNATURE_FILE), encoding="utf-8") as handle:
        signature = json.load(handle)
    post = signature.get("postprocess") or {}
    with open(os.path.join(model_dir, post.get("synset", "synset.txt")), encoding="utf-8") as handle:
        labels = [line.rstrip("\r\n") for line in handle if line.strip()]
    bodies = {}
    for path in args.input:
        with open(path, "rb") as handle:
            bodies[path] = handle.read()
    input_spec = signature["inputs"][0]
    shape = tuple(d if isinstance(d, int) and d > 0 else 1 for d in input_spec["shape"])
    entries = _engine_entries(signature)
    threads = int(os.environ.get("OMP_NUM_THREADS") or os.cpu_count() or 1)
    result = {"threads": threads, "engines": {}, "decoder": imaging.decoder_description()}
    with tempfile.TemporaryDirectory(prefix="mmsctl-limit-") as tmp:
        for engine in args.engines.split(","):
            started = time.perf_counter()
            try:
                if engine == "mxnet":
                    if "mxnet" not in entries:
                        raise UsageError("the archive has no MXNet checkpoint (onnxruntime-only archive)")
                    forward, how = _mxnet_forward(model_dir, entries["mxnet"], input_spec["name"], shape)
                else:
                    path, source = _onnx_path(model_dir, entries, input_spec["name"], shape, tmp)
                    forward, how = _onnxruntime_forward(path, threads)
                    how += "; " + source
            except Exception as err:  # reported as unavailable with the reason, the other engine still runs
                result["engines"][engine] = {"available": False, "why": "%s: %s" % (
                    type(err).__name__, str(err).strip().splitlines()[0] if str(err).strip() else "")}
                continue
            loaded = time.perf_counter() - started
            result["engines"][engine] = {
                "available": True, "how": how, "load_s": loaded,
                "inputs": _measure(forward, bodies, imaging, topk, signature["preprocess"], labels,
                                   int(post.get("topk", 5)), bool(post.get("apply_softmax", True)),
                                   args.requests, args.warmup)}
            del forward
    channel.write(json.dumps(result) + "\n")
    channel.flush()
    return 0


# -- the parent ---------------------------------------------------------------------------------
def run_limit(archive, inputs, requests=20, warmup=3, threads=None, log_dir=None, timeout=900.0,
              engines=ENGINES, message=None):
    """Measure the independent limit of ``archive`` (a .mar or an unpacked folder) on ``inputs``.

    Returns ``{"threads", "engines": {name: {...}}, "best": {input: engine}, "inputs": [...]}``;
    input keys are absolute paths.
    """
    if requests < 1 or warmup < 0:
        raise UsageError("the limit needs at least one request and a non-negative warm-up")
    threads = threads or detect_vcpus()
    inputs = [os.path.abspath(path) for path in inputs]
    with tempfile.TemporaryDirectory(prefix="mmsctl-limit-") as tmp:
        model_dir = archive
        if os.path.isfile(archive):
            model_dir = mar.extract(archive, os.path.join(tmp, "model"))
        log_dir = os.path.abspath(log_dir or tmp)
        os.makedirs(log_dir, exist_ok=True)
        log_path = os.path.join(log_dir, "limit-%s.log" % os.path.basename(archive.rstrip("/")))
        command = [sys.executable, "-m", "mmsctl.bench.limit", "--model-dir", model_dir, "--requests", str(requests),
                   "--warmup", str(warmup), "--engines", ",".join(engines)]
        for path in inputs:
            command += ["--input", path]
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), MXNET_CPU_WORKER_NTHREADS="1")
        if message:
            message("in-process limit of %s: %s, one process x %d threads" % (
                os.path.basename(archive), " and ".join(engines), threads))
        with open(log_path, "wb") as log:
            try:
                done = subprocess.run(command, env=env, stdout=subprocess.PIPE, stderr=log, timeout=timeout,
                                      check=False)
            except subprocess.TimeoutExpired:
                raise BenchError("the in-process limit of %s took over %.0f s; its log: %s" % (
                    archive, timeout, log_path))
        lines = done.stdout.decode("utf-8", errors="replace").strip().splitlines()
        if done.returncode != 0 or not lines:
            with open(log_path, encoding="utf-8", errors="replace") as handle:
                tail = "\n".join(handle.read().splitlines()[-8:])
            raise BenchError("the in-process limit of %s failed (status %d); its log %s:\n%s" % (
                archive, done.returncode, log_path, tail))
        limit = json.loads(lines[-1])
    limit["inputs"] = inputs
    limit["archive"] = os.path.abspath(archive)
    limit["best"] = {key: best_engine(limit, key)[0] for key in inputs}
    return limit


def add_limit(report, archive, load, log_dir=None, message=None):
    """Measure the independent limit of ``archive`` on the report's input and keep it in ``report``."""
    requests = load.requests or DEFAULT_REQUESTS
    report["limit"] = run_limit(archive, [report["input"]["path"]], requests=requests, warmup=min(load.warmup, 5),
                                log_dir=log_dir, message=message)
    return report


if __name__ == "__main__":
    sys.exit(child_main())
