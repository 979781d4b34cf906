"""p50 of one archive on MMS 1.1.11 and on TorchServe 0.12, same run, same body (issue 18).

    MMSCTL_TORCHSERVE=~/.cache/mmsctl/torchserve-venv-... mmsctl bench servers [--requests 200]

Builds the default archive (``--engine auto``: both engines, served on onnxruntime; ``--engine mxnet`` to compare
MXNet), starts both servers with the cpu-latency profile, warms each, then sends the requests
one at a time, alternating between the servers, so that whatever else runs on the machine
weighs on both alike. Prints p50/p90 per server and the TorchServe/MMS ratio. Loopback only.
"""
import os
import tempfile
import time

import requests

from mmsctl import server, torchserve
from mmsctl.archives import mxnet_checkpoint
from mmsctl.config import profiles

from .errors import BenchError
from .load import free_port
from .shared import model_store, request_body
from .stats import percentile

HELP = ("p50 of the default archive on MMS 1.1.11 and on TorchServe (torchserve from $MMSCTL_TORCHSERVE or PATH), "
        "same run, requests alternating")
EXAMPLE = "mmsctl bench servers --requests 200\nmmsctl bench servers --requests 200 --engine mxnet"


def timed_post(session, url, body):
    started = time.perf_counter()
    reply = session.post(url, data=body, headers={"Content-Type": "application/octet-stream"}, timeout=120)
    elapsed = (time.perf_counter() - started) * 1000.0
    if reply.status_code != 200:
        raise BenchError("%s answered %d: %s" % (url, reply.status_code, reply.text[:200].replace("\n", " ")))
    return elapsed, reply.json()


def measure(urls, body, warmup, count):
    """{server: [latency ms]}: ``warmup`` unmeasured requests each, then ``count`` each, alternating."""
    latencies = {name: [] for name in urls}
    answers = {}
    with requests.Session() as session:
        for name, url in urls.items():
            for _ in range(warmup):
                answers[name] = timed_post(session, url, body)[1]
        for index in range(count):
            order = list(urls) if index % 2 == 0 else list(reversed(urls))  # neither always goes first
            for name in order:
                elapsed, _ = timed_post(session, urls[name], body)
                latencies[name].append(elapsed)
    return latencies, answers


def render(latencies, vcpus):
    """The table: p50/p90 per server and the p50 ratio to MMS.

    >>> print(render({"mms": [10.0, 20.0, 30.0], "torchserve": [15.0, 30.0, 45.0]}, 2).splitlines()[3])
    | torchserve | 3 | 30.0 | 42.0 | 1.50 |
    """
    base = latencies["mms"]
    lines = ["| server | requests | p50 (ms) | p90 (ms) | p50 ratio to MMS |", "|---|---|---|---|---|"]
    for name, values in latencies.items():
        lines.append("| %s | %d | %.1f | %.1f | %.2f |" % (
            name, len(values), percentile(values, 50), percentile(values, 90),
            percentile(values, 50) / percentile(base, 50)))
    load = os.getloadavg()
    lines.append("(cpu-latency, 1 worker x %d threads; load average %.2f / %.2f / %.2f)" % ((vcpus,) + load))
    return "\n".join(lines)


def add_options(parser):
    """The options of ``mmsctl bench servers``."""
    parser.add_argument("--engine", default="auto", choices=["auto", "onnxruntime", "mxnet"],
                        help="the archive built: auto (default: the default archive, both engines, served on "
                             "onnxruntime), or one engine")
    parser.add_argument("--image", help="request body (default: scikit-image's chelsea.png)")
    parser.add_argument("--requests", type=int, default=200, help="measured requests per server (default 200)")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--vcpus", type=int, help="vCPUs the profile plans threads for (default: detected)")
    return parser


def main(args):
    """``mmsctl bench servers``: measure both servers, print the table; 1 when their answers differ."""
    args.vcpus = args.vcpus or profiles.detect_vcpus()
    body = request_body(args.image)
    with tempfile.TemporaryDirectory(prefix="compare-servers-") as workdir:
        store = model_store(workdir)
        mxnet_checkpoint.build_efficientnet_lite0(store, engine=args.engine)
        models = {"efficientnet-lite0": "efficientnet-lite0.mar"}
        states = {}
        try:
            for name in ("mms", "torchserve"):
                profile = profiles.build_profile("cpu-latency", vcpus=args.vcpus, model_store=store,
                                                 inference_port=free_port(), management_port=free_port())
                folder = os.path.join(workdir, name)
                if name == "mms":
                    states[name] = server.start(profile, folder, models, ready_timeout=600)
                else:
                    states[name] = torchserve.start(profile, folder, models, ready_timeout=600,
                                                    metrics_port=free_port())
            urls = {name: "%s/predictions/efficientnet-lite0" % state.inference_url for name, state in states.items()}
            latencies, answers = measure(urls, body, args.warmup, args.requests)
        finally:
            for state in states.values():
                server.stop(state)
    same = answers["mms"] == answers["torchserve"]
    print("efficientnet-lite0 (--engine %s), %d bytes body, answers %s" % (
        args.engine, len(body), "identical" if same else "DIFFER"))
    print(render(latencies, args.vcpus))
    return 0 if same else 1
