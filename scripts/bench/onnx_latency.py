"""CPU latency of the default model on each engine, measured in the same run.

``mmsctl bench onnx-latency --requests 100 --out onnx-latency.json`` archives
EfficientNet-Lite0 twice (``--engine mxnet`` and ``--engine onnxruntime``), serves both
from one ``multi-model-server`` with the cpu-latency profile (one worker per model,
all vCPUs as threads), and sends the same image to each model in turn, one request
at a time: request i goes to the MXNet model, then to the onnxruntime one, so both
see the same machine conditions. It prints p50/p95/mean per engine and the p50 ratio,
and checks the two engines agree on the top class. Run it on a quiet machine.
"""
import json
import os
import tempfile

from mmsctl import server
from mmsctl.archives import mxnet_checkpoint
from mmsctl.config import profiles
from mmsctl.errors import MmsctlError, UsageError
from mmsctl.quickstart import bundled_image

from .load import HttpSender, close_all, free_port, interleaved
from .shared import message as progress, request_body
from .stats import percentile

ENGINES = ("mxnet", "onnxruntime")
HELP = "the default model's CPU latency on MXNet and on onnxruntime, one server, requests interleaved"
EXAMPLE = "mmsctl bench onnx-latency --requests 100 --out onnx-latency.json"


class LatencyError(MmsctlError):
    """A request failed or the engines disagree."""


def summarize(latencies_ms):
    """p50/p95/mean/min/max of latencies in milliseconds.

    >>> summarize([10.0, 20.0, 30.0])["p50"]
    20.0
    """
    return {"requests": len(latencies_ms), "p50": percentile(latencies_ms, 50), "p95": percentile(latencies_ms, 95),
            "mean": sum(latencies_ms) / len(latencies_ms), "min": min(latencies_ms), "max": max(latencies_ms)}


def build_archives(store, base_name="efficientnet-lite0"):
    """{engine: (model name, archive file)} for the default model on each engine."""
    archives = {}
    for engine in ENGINES:
        name = "%s-%s" % (base_name, engine)
        path = mxnet_checkpoint.build_efficientnet_lite0(store, name=name, force=True, engine=engine)
        archives[engine] = (name, os.path.basename(path))
    return archives


def interleaved_latencies(inference_url, models, body, count, warmup=5, timeout=60.0):
    """{model: [ms, ...]}: ``count`` sequential requests per model, the models taking turns.

    Also returns each model's last answer, to compare the engines' top classes.
    """
    senders = {model: HttpSender(inference_url, model, body, timeout=timeout) for model in models}
    try:
        samples = interleaved(senders, count, warmup=warmup, chunk=1)
    finally:
        close_all(senders.values())
    latencies, answers = {}, {}
    for model, sender in senders.items():
        failed = [status for _, status in samples[model] if status != 200]
        if failed:
            raise LatencyError("%s/predictions/%s answered %s: %s" % (
                inference_url, model, failed[0], (sender.last_body or b"")[:300].decode("utf-8", "replace")))
        latencies[model] = [ms for ms, _ in samples[model]]
        answers[model] = json.loads(sender.last_body)
    return latencies, answers


def run(requests_per_engine=100, warmup=5, image=None, workdir=None, vcpus=None, out=None, message=print):
    """Build, serve, measure, stop; returns the report (a dict) and writes it to ``out`` if given."""
    if requests_per_engine < 1:
        raise UsageError("--requests must be at least 1")
    if image is None:
        image = bundled_image()
    body = request_body(image)
    with tempfile.TemporaryDirectory(prefix="mmsctl-onnx-latency-", dir=workdir) as tmp:
        store = os.path.join(tmp, "model_store")
        os.makedirs(store)
        message("archiving efficientnet-lite0 for %s ..." % " and ".join(ENGINES))
        archives = build_archives(store)
        inference_port = free_port()
        profile = profiles.build_profile("cpu-latency", vcpus=vcpus, model_store=store,
                                         inference_port=inference_port,
                                         management_port=free_port(taken=(inference_port,)))
        models = {name: archive for name, archive in archives.values()}
        state = server.start(profile, os.path.join(tmp, "server"), models, ready_timeout=300)
        try:
            message("serving on %s (%d worker x %d threads per model); %d requests per engine ..."
                    % (state.inference_url, profile.workers, profile.omp_threads, requests_per_engine))
            latencies, answers = interleaved_latencies(state.inference_url, list(models), body,
                                                       requests_per_engine, warmup)
        finally:
            server.stop(state)
    report = {"model": "efficientnet-lite0", "image": image, "profile": profile.name, "vcpus": profile.vcpus,
              "threads_per_worker": profile.omp_threads, "engines": {}}
    for engine, (name, _) in archives.items():
        report["engines"][engine] = dict(summarize(latencies[name]), top1=answers[name][0])
    tops = {engine: entry["top1"]["class"] for engine, entry in report["engines"].items()}
    if len(set(tops.values())) != 1:
        raise LatencyError("the engines disagree on the top class: %s" % tops)
    report["p50_ratio_onnxruntime_over_mxnet"] = (report["engines"]["onnxruntime"]["p50"]
                                                  / report["engines"]["mxnet"]["p50"])
    if out:
        with open(out, "w", encoding="utf-8") as handle:
            json.dump(report, handle, indent=2)
    return report


def render(report):
    lines = ["efficientnet-lite0, %s profile, %d vCPUs, %d requests per engine, one at a time, interleaved"
             % (report["profile"], report["vcpus"], report["engines"]["mxnet"]["requests"]),
             "%-12s %9s %9s %9s   %s" % ("engine", "p50 ms", "p95 ms", "mean ms", "top-1")]
    for engine, entry in report["engines"].items():
        lines.append("%-12s %9.1f %9.1f %9.1f   %s (%.4f)" % (engine, entry["p50"], entry["p95"], entry["mean"],
                                                             entry["top1"]["class"], entry["top1"]["probability"]))
    lines.append("p50 onnxruntime / mxnet = %.2f" % report["p50_ratio_onnxruntime_over_mxnet"])
    return "\n".join(lines)


def add_options(parser):
    """The options of ``mmsctl bench onnx-latency``."""
    parser.add_argument("--requests", type=int, default=100, help="measured requests per engine (default 100)")
    parser.add_argument("--warmup", type=int, default=5, help="unmeasured requests per engine first (default 5)")
    parser.add_argument("--image", help="image to send (default: scikit-image's chelsea.png, CC0)")
    parser.add_argument("--vcpus", type=int, help="vCPUs the profile plans threads for (default: detected)")
    parser.add_argument("--workdir", help="folder for the temporary model store and server state")
    parser.add_argument("--out", help="write the report as JSON here")
    return parser


def main(args):
    """``mmsctl bench onnx-latency``: measure and print the table."""
    report = run(args.requests, args.warmup, args.image, args.workdir, args.vcpus, args.out, message=progress)
    print(render(report))
    return 0
