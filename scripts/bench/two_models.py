"""Two copies of one archive on one server, both under load at once: the old plan against the core budget.

* before: what ``mmsctl serve --models a=... b=...`` planned until issue 15, every model
  as if alone on the machine (cpu-latency: 1 worker x all vCPUs each, so 2 x vCPUs
  OpenMP threads on vCPUs cores);
* after: one core budget per server (cpu-latency with 2 models: 1 worker x vCPUs/2 threads each).

Each configuration is a real server (``mmsctl.server.start``) with models ``a`` and ``b``;
``--concurrency`` clients per model send the same image to both models at the same time
for ``--seconds``, and the table gives p50 and requests/s per model, and the after/before
ratios, all from one run (``--rounds`` alternates the two configurations).

    mmsctl bench two-models                         # efficientnet-lite0, detected vCPUs
    mmsctl bench two-models --vcpus 2 --seconds 30 --rounds 2

A measurement, not a test: other processes on the cores change every number.
"""
import dataclasses
import os
import sys
import tempfile
import threading

from mmsctl import server
from mmsctl.config import profiles

from .load import free_port
from .prove_profiles import run_phase
from .shared import ARCHIVES, aligned_table, build_archive, model_store, request_body

MODELS = ("a", "b")
HELP = "two models on one server, both under load: the old per-model plan against the core budget"
EXAMPLE = "mmsctl bench two-models --vcpus 2 --seconds 30 --rounds 2"


def old_plan(profile, names):
    """The plan before the core budget: every model gets the profile's workers x threads, as if alone."""
    plan = tuple(profiles.ModelPlan(name, profile.workers, profile.omp_threads, profile.vcpus) for name in names)
    environment = dict(profile.environment, MMSCTL_THREADS=",".join("%s=%d" % (p.name, p.threads) for p in plan))
    return dataclasses.replace(profile, plan=plan, environment=environment)


def measure(label, profile, store, archive, body, args, workdir):
    """Serve a and b under ``profile`` (planned), load both at once; return {model: Phase}."""
    state = server.start(profile, os.path.join(workdir, label), {name: archive for name in MODELS},
                         ready_timeout=600)
    try:
        for name in MODELS:  # warm each model's workers first
            run_phase(state.inference_url, name, body, 1, args.warmup, args.seconds)
        phases = {}

        def load(name):
            phases[name] = run_phase(state.inference_url, name, body, args.concurrency, 10 ** 9, args.seconds)
        threads = [threading.Thread(target=load, args=(name,)) for name in MODELS]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        server.stop(state)
    return phases


def render(rows):
    header = ("plan", "model", "workers x threads", "p50 (ms)", "req/s", "errors")
    lines = []
    for label, profile, phases in rows:
        for plan in profile.plan:
            phase = phases[plan.name]
            lines.append((label, plan.name, "%d x %d" % (plan.workers, plan.threads), "%.1f" % phase.percentile(50),
                          "%.2f" % phase.requests_per_s, str(phase.errors)))
        total = sum(phases[name].requests_per_s for name in MODELS)
        lines.append((label, "both", "%d threads in all" % sum(p.workers * p.threads for p in profile.plan), "",
                      "%.2f" % total, ""))
    return aligned_table(header, lines)


def ratios(rows):
    """after / before for each round pair: total req/s and each model's p50."""
    befores = [phases for label, _, phases in rows if label.startswith("before")]
    afters = [phases for label, _, phases in rows if label.startswith("after")]
    out = []
    for before, after in zip(befores, afters):
        total = sum(after[n].requests_per_s for n in MODELS) / max(1e-9, sum(before[n].requests_per_s for n in MODELS))
        p50 = ", ".join("%s %.2fx" % (n, after[n].percentile(50) / before[n].percentile(50)) for n in MODELS)
        out.append("after/before: req/s (both models) %.2fx; p50 %s" % (total, p50))
    return "\n".join(out)


def add_options(parser):
    """The options of ``mmsctl bench two-models``."""
    parser.add_argument("--archive", choices=ARCHIVES, default="efficientnet-lite0")
    parser.add_argument("--model-store", help="folder for the archive (default: a temporary folder)")
    parser.add_argument("--image", help="request body (default: scikit-image's CC0 cat photo)")
    parser.add_argument("--profile", default="cpu-latency", choices=["cpu-latency", "cpu-throughput"])
    parser.add_argument("--vcpus", type=int, help="vCPUs the profiles plan for (default: detected)")
    parser.add_argument("--concurrency", type=int, default=2, help="clients per model (default 2)")
    parser.add_argument("--seconds", type=float, default=30.0, help="seconds of load per configuration (default 30)")
    parser.add_argument("--warmup", type=int, default=5, help="requests per model before measuring (default 5)")
    parser.add_argument("--rounds", type=int, default=1, help="before/after pairs, alternated (default 1)")
    return parser


def main(args):
    """``mmsctl bench two-models``: measure both plans, print the table and the ratios."""
    args.vcpus = args.vcpus or profiles.detect_vcpus()
    body = request_body(args.image)
    with tempfile.TemporaryDirectory(prefix="two-models-") as workdir:
        store = model_store(workdir, args.model_store)
        archive = os.path.basename(build_archive(args.archive, store))
        rows = []
        load = os.getloadavg()[0]
        for round_ in range(1, args.rounds + 1):
            base = profiles.build_profile(args.profile, vcpus=args.vcpus, model_store=store,
                                          inference_port=free_port(), management_port=free_port())
            budget, _ = profiles.plan_models(base, [profiles.ModelRequest(name) for name in MODELS])
            for label, profile in (("before #%d" % round_, old_plan(base, MODELS)), ("after #%d" % round_, budget)):
                print("measuring %s: %s" % (label, "; ".join(p.describe() for p in profile.plan)),
                      file=sys.stderr, flush=True)
                rows.append((label, profile, measure(label.replace(" #", "-"), profile, store, archive, body, args,
                                                     workdir)))
    print("archive %s, profile %s, %d vCPUs planned (%d online), %d clients per model, %.0f s per configuration, "
          "load average %.2f at the start" % (args.archive, args.profile, args.vcpus, os.cpu_count() or 0,
                                              args.concurrency, args.seconds, load))
    print(render(rows))
    print(ratios(rows))
    return 0
