"""Prove the CPU profile rules on this machine: same archive, cpu-latency vs cpu-throughput.

For each profile it starts a real server (``mmsctl.server.start``, the code
behind ``mmsctl serve``), then measures

* latency: p50 (and p95) of sequential requests, concurrency 1;
* throughput: requests/s with 2 x vCPUs clients sending at once;

and prints one table. Every phase is bounded by a request count AND a time
limit, whichever comes first. The rules predict cpu-latency has the lower p50 and
cpu-throughput the higher requests/s; the table says whether that holds here.

    mmsctl bench profiles                      # efficientnet-lite0
    mmsctl bench profiles --archive resnet152  # random-weight ResNet-152
    mmsctl bench profiles --env OMP_WAIT_POLICY=PASSIVE --property job_queue_size=1000

``--env``/``--property`` add a knob to both profiles, to measure whether it helps.
Measure on a quiet machine: other processes on the cores change every number.
"""
import dataclasses
import json
import os
import tempfile

from mmsctl import server
from mmsctl.config import profiles
from mmsctl.errors import UsageError

from . import load
from .load import HttpSender, close_all, free_port
from .shared import ARCHIVES, aligned_table, build_archive, model_store, request_body
from .stats import percentile

PROFILES = ("cpu-latency", "cpu-throughput")
HELP = "cpu-latency vs cpu-throughput on one archive: p50 at concurrency 1, requests/s under load"
EXAMPLE = "mmsctl bench profiles --archive resnet152 --requests 100 --seconds 120"


@dataclasses.dataclass
class Phase:
    """One bounded load phase: latencies (ms) of the answered requests, errors, wall time."""

    concurrency: int
    latencies_ms: list
    errors: int
    elapsed_s: float

    @property
    def requests_per_s(self):
        return len(self.latencies_ms) / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def percentile(self, q):
        return percentile(self.latencies_ms, q) if self.latencies_ms else float("nan")


def run_phase(url, model, body, concurrency, requests, seconds):
    """``requests`` requests from ``concurrency`` clients, stopped after ``seconds`` at the latest."""
    senders = [HttpSender(url, model, body, timeout=300) for _ in range(concurrency)]
    try:
        result = load.run_phase(senders, requests=requests, max_seconds=seconds, label="c=%d" % concurrency)
    finally:
        close_all(senders)
    return Phase(concurrency, [ms for ms, status in result.samples if status == 200],
                 sum(1 for _, status in result.samples if status != 200), result.elapsed_s)


def pairs(values):
    out = {}
    for value in values or []:
        key, sep, val = value.partition("=")
        if not sep or not key:
            raise UsageError("expected KEY=VALUE, got %r" % value)
        out[key] = val
    return out


def measure(name, args, store, model_file, body, workdir):
    """Serve ``model_file`` under profile ``name``; return (profile, warm-up, latency, throughput)."""
    profile = profiles.build_profile(name, vcpus=args.vcpus, model_store=store, inference_port=free_port(),
                                     management_port=free_port())
    profile = dataclasses.replace(profile, environment={**profile.environment, **pairs(args.env)},
                                  extra_properties={**profile.extra_properties, **pairs(args.property)})
    model = os.path.splitext(os.path.basename(model_file))[0]
    state = server.start(profile, os.path.join(workdir, name), {model: os.path.basename(model_file)},
                         ready_timeout=600)
    try:
        warm = run_phase(state.inference_url, model, body, 1, args.warmup, args.seconds)
        latency = run_phase(state.inference_url, model, body, 1, args.requests, args.seconds)
        throughput = run_phase(state.inference_url, model, body, 2 * profile.vcpus,
                               args.requests * 2 * profile.vcpus, args.seconds)
    finally:
        server.stop(state)
    return profile, warm, latency, throughput


def render_table(rows, vcpus):
    header = ("profile", "workers x threads", "p50 c=1 (ms)", "p95 c=1 (ms)", "req/s c=%d" % (2 * vcpus),
              "p50 c=%d (ms)" % (2 * vcpus), "requests", "errors")
    lines = []
    for profile, _, latency, throughput in rows:
        lines.append((profile.name, "%d x %d" % (profile.workers, profile.omp_threads),
                       "%.1f" % latency.percentile(50), "%.1f" % latency.percentile(95),
                       "%.2f" % throughput.requests_per_s, "%.1f" % throughput.percentile(50),
                       "%d + %d" % (len(latency.latencies_ms), len(throughput.latencies_ms)),
                       str(latency.errors + throughput.errors)))
    return aligned_table(header, lines)


def verdict(rows):
    by_name = {profile.name: (latency, throughput) for profile, _, latency, throughput in rows}
    if set(by_name) != set(PROFILES):
        return ""
    lat, thr = by_name["cpu-latency"], by_name["cpu-throughput"]
    p50 = lat[0].percentile(50) <= thr[0].percentile(50)
    rps = thr[1].requests_per_s >= lat[1].requests_per_s
    return ("cpu-latency has the lower p50 at concurrency 1: %s (%.1f vs %.1f ms)\n"
            "cpu-throughput has the higher requests/s under load: %s (%.2f vs %.2f)"
            % ("yes" if p50 else "NO", lat[0].percentile(50), thr[0].percentile(50),
               "yes" if rps else "NO", thr[1].requests_per_s, lat[1].requests_per_s))


def add_options(parser):
    """The options of ``mmsctl bench profiles``."""
    parser.add_argument("--archive", choices=ARCHIVES, default="efficientnet-lite0",
                        help="model to serve (default efficientnet-lite0; resnet152 has random weights)")
    parser.add_argument("--model-store", help="folder for the archive (default: a temporary folder)")
    parser.add_argument("--image", help="request body (default: scikit-image's CC0 cat photo)")
    parser.add_argument("--vcpus", type=int, help="vCPUs the profiles plan for (default: detected)")
    parser.add_argument("--profiles", default=",".join(PROFILES), help="comma-separated (default %(default)s)")
    parser.add_argument("--warmup", type=int, default=5, help="sequential requests before measuring (default 5)")
    parser.add_argument("--requests", type=int, default=50,
                        help="requests at concurrency 1; x 2 x vCPUs under load (default 50)")
    parser.add_argument("--seconds", type=float, default=120.0, help="time limit of each phase (default 120)")
    parser.add_argument("--env", action="append", metavar="KEY=VALUE", help="extra server environment (repeatable)")
    parser.add_argument("--property", action="append", metavar="KEY=VALUE",
                        help="extra config.properties key (repeatable)")
    parser.add_argument("--json", metavar="FILE", help="also write the numbers as JSON")
    return parser


def main(args):
    """``mmsctl bench profiles``: measure, print the table and the verdict."""
    names = [n.strip() for n in args.profiles.split(",") if n.strip()]
    unknown = [n for n in names if n not in PROFILES]
    if unknown:
        raise UsageError("only the CPU profiles are compared here, not %s" % ", ".join(unknown))
    for values in (args.env, args.property):
        pairs(values)  # a bad KEY=VALUE is one line before anything is built
    args.vcpus = args.vcpus or profiles.detect_vcpus()
    body = request_body(args.image)
    with tempfile.TemporaryDirectory(prefix="prove-profiles-") as workdir:
        store = model_store(workdir, args.model_store)
        model_file = build_archive(args.archive, store)
        load_before = os.getloadavg()
        rows = [measure(name, args, store, model_file, body, workdir) for name in names]
        load_after = os.getloadavg()
    import mxnet
    print("model %s, mxnet %s, %d vCPUs planned (%d online), load average %.2f before / %.2f after"
          % (args.archive, mxnet.__version__, args.vcpus, os.cpu_count() or 0, load_before[0], load_after[0]))
    if args.env or args.property:
        print("extra: %s" % ", ".join((args.env or []) + (args.property or [])))
    print(render_table(rows, args.vcpus))
    text = verdict(rows)
    if text:
        print(text)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump({"archive": args.archive, "vcpus": args.vcpus, "load_average": [load_before, load_after],
                       "extra": {"env": pairs(args.env), "property": pairs(args.property)},
                       "rows": [{"profile": p.name, "workers": p.workers, "omp_threads": p.omp_threads,
                                 "p50_c1_ms": lat.percentile(50), "p95_c1_ms": lat.percentile(95),
                                 "rps_loaded": thr.requests_per_s, "p50_loaded_ms": thr.percentile(50),
                                 "concurrency": thr.concurrency, "requests": [len(lat.latencies_ms),
                                                                              len(thr.latencies_ms)],
                                 "errors": lat.errors + thr.errors + warm.errors}
                                for p, warm, lat, thr in rows]}, handle, indent=2)
    return 0
