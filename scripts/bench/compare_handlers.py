"""``mmsctl bench compare``: our archives against the handler a user writes from MMS's docs,
and against the independent in-process limit, in one run.

One stock ``multi-model-server`` (profile cpu-latency) serves, side by side:

* ``efficientnet-lite0``: the default archive;
* ``efficientnet-lite0-int8``: its ``--quantize int8`` build (unless ``--no-int8``);
* ``resnet-L``: a ResNet-L v1 with random (seeded) weights, built by ``mmsctl``;
* ``resnet-L-docs``: the same checkpoint behind the docs-style handler
  (``reference_handlers/docs_service.py``, packed by the stock ``model-archiver``);
* ``mmsctl-floor``: a no-op handler, the MMS floor, with the same bodies.

Two bodies: scikit-image's chelsea PNG, and a 1280x960 camera-like JPEG made from it
(upscaled, seeded noise, quality 90). Requests go one at a time (concurrency 1),
interleaved in small chunks across the models so that a busy machine slows all of
them alike. Then, with that server stopped, the independent limit runs (one process,
every core, MXNet fused and onnxruntime on the same weights, the archive's own decoder),
and a cpu-throughput server measures saturated throughput. Everything prints as one
table of same-run ratios; ``compare.json`` and ``compare.md`` keep it. Targets are
reported, not asserted.

"Ours" is a request's served p50 less the MMS floor measured with the same body on the
same server: the part of a request our handler and engine cost. It is compared with the
in-process best of the fp32 weights (the int8 archive too: that is what int8 must beat).

    mmsctl bench compare --out bench-compare                  # about 6 minutes on 2 cores
    mmsctl bench compare --layers 18 --requests 6 --out quick  # a quick look
"""
import json
import os
import sys
import time
from dataclasses import replace

import numpy as np
from PIL import Image

from mmsctl.archives import builder, mxnet_checkpoint, quantize
from mmsctl.config import profiles

from mmsctl import server
from mmsctl.errors import MmsctlError
from mmsctl.files import read_regular
from mmsctl.handlers.contract import THREADS_ENV
from mmsctl.quickstart import bundled_image

from .breakdown import best_engine
from .limit import run_limit
from .load import HttpSender, close_all, free_port, interleaved, run_phase
from . import reference
from .random_resnet import build_random_resnet
from .report import load_average, machine_info
from .stats import summarize

DEFAULT_MODEL = "efficientnet-lite0"
INT8_MODEL = DEFAULT_MODEL + "-int8"
#: the targets (reported, never asserted): ours = served p50 - MMS floor, against the fp32 in-process best
TARGETS = {"default_ours_over_best": 1.15, "int8_ours_over_best": 0.80, "int8_over_fp32_throughput": 1.4,
           "resnet_over_docs": 0.90, "resnet_over_fused": 1.10, "throughput": 0.95}


def camera_jpeg(path, source=None, size=(1280, 960), seed=0, quality=90):
    """A camera-sized JPEG made deterministically from chelsea: upscaled, with seeded noise."""
    with Image.open(source or bundled_image()) as image:
        pixels = np.asarray(image.convert("RGB").resize(size, Image.Resampling.BICUBIC), dtype=np.float32)
    noise = np.random.default_rng(seed).normal(0.0, 6.0, pixels.shape)
    Image.fromarray(np.clip(pixels + noise, 0, 255).astype(np.uint8)).save(path, format="JPEG", quality=quality)
    return path


def prepare(out, layers, message, int8=True):
    """Model store with the archives, and the two bodies: (store, {model: file}, {image: path})."""
    store = os.path.join(out, "store")
    os.makedirs(store, exist_ok=True)
    default = os.path.join(store, DEFAULT_MODEL + ".mar")
    if not builder.has_current_handlers(default):  # absent, or built with other handler code
        message("building %s" % default)
        mxnet_checkpoint.build_efficientnet_lite0(store, force=True)
    if int8 and not builder.has_current_handlers(os.path.join(store, INT8_MODEL + ".mar")):
        message("building %s (--quantize int8)" % INT8_MODEL)
        mxnet_checkpoint.build_efficientnet_lite0(store, name=INT8_MODEL, force=True, note=message,
                                                  quantize=quantize.QuantizeOptions())
    resnet = "resnet-%d" % layers
    if not builder.has_current_handlers(os.path.join(store, resnet + ".mar")):
        message("building %s (random weights, seed 0, with its ONNX export)" % resnet)
        build_random_resnet(store, layers=layers, name=resnet, seed=0, force=True)
    docs, how = reference.build_docs_archive(os.path.join(store, resnet + ".mar"), store, resnet + "-docs")
    message("docs-style handler archive %s, packed by %s" % (docs, how))
    images = {"chelsea.png": bundled_image(), "camera-1280x960.jpg": os.path.join(out, "camera-1280x960.jpg")}
    camera_jpeg(images["camera-1280x960.jpg"])
    models = {DEFAULT_MODEL: DEFAULT_MODEL + ".mar", resnet: resnet + ".mar", resnet + "-docs": resnet + "-docs.mar"}
    if int8:
        models[INT8_MODEL] = INT8_MODEL + ".mar"
    return store, models, images, how


def interleaved_latency(url, cells, requests, warmup, chunk=5):
    """p50 at concurrency 1 of each (model, body) cell, requests interleaved in chunks of ``chunk``.

    Returns {cell: {"p50_ms", "ok", "errors", "answer"}}.
    """
    senders = {cell: HttpSender(url, cell[0], body) for cell, body in cells.items()}
    try:
        samples = interleaved(senders, requests, warmup=warmup, chunk=chunk)
    finally:
        close_all(senders.values())
    results = {}
    for cell, cell_samples in samples.items():
        figures = summarize(cell_samples, 1.0)
        answer = (senders[cell].last_body or b"").decode("utf-8", errors="replace")
        results[cell] = {"p50_ms": figures["latency_ms"]["p50"], "ok": figures["ok"], "errors": figures["errors"],
                         "answer": answer}
    return results


def top1(answer):
    try:
        return json.loads(answer)[0]["class"]
    except (ValueError, LookupError, TypeError):
        return None


def _profile(name, store, vcpus, models, workers=None):
    """The profile with every model planned as if it were alone on the machine.

    The comparison loads one model at a time (interleaved requests at concurrency 1, then one saturated
    model after the other), so each may use every core, as the in-process limit does; a server whose
    models are all busy at once keeps the one core budget (``mmsctl serve``, issue 15).
    """
    profile = profiles.build_profile(name, vcpus=vcpus, model_store=store, inference_port=free_port(),
                                     management_port=free_port(), workers=workers)
    plan = tuple(step for model in models
                 for step in profiles.plan_models(profile, [profiles.ModelRequest(model)])[0].plan)
    environment = dict(profile.environment, OMP_NUM_THREADS=str(min(step.threads for step in plan)))
    environment[THREADS_ENV] = ",".join("%s=%d" % (step.name, step.threads) for step in plan)
    return replace(profile, plan=plan, environment=environment)


def throughput(store, models, images, requests, vcpus, out, message):
    """Saturated requests/s of each (model, image) on a cpu-throughput server (2 x workers clients)."""
    profile = _profile("cpu-throughput", store, vcpus, models)
    message("cpu-throughput server: %d workers x %d thread" % (profile.workers, profile.omp_threads))
    state = server.start(profile, os.path.join(out, "servers", "cpu-throughput"), models, ready_timeout=600)
    results = {}
    try:
        for model in models:
            for image, path in images.items():
                body = read_regular(path)
                senders = [HttpSender(state.inference_url, model, body) for _ in range(2 * profile.workers)]
                try:
                    run_phase(senders, requests=len(senders) * 2, label="warm-up")
                    phase = run_phase(senders, requests=requests, label="throughput")
                finally:
                    close_all(senders)
                figures = summarize(phase.samples, phase.elapsed_s)
                results[(model, image)] = {"rps": figures["rps"], "ok": figures["ok"], "errors": figures["errors"],
                                           "concurrency": len(senders), "workers": profile.workers}
    finally:
        server.stop(state)
    return results


def run(args, message):
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    started = time.time()
    store, models, images, packed_by = prepare(out, args.layers, message, int8=not args.no_int8)
    resnet = "resnet-%d" % args.layers
    profile = _profile("cpu-latency", store, args.vcpus, models)
    message("cpu-latency server: %d worker x %d threads, models %s" % (profile.workers, profile.omp_threads,
                                                                      ", ".join(models)))
    state = server.start(profile, os.path.join(out, "servers", "cpu-latency"), models, ready_timeout=600)
    load = {"served latency": load_average()}
    try:
        bodies = {image: read_regular(path) for image, path in images.items()}
        # The floor is one more model in the interleaved requests: same bodies, same moments
        with reference.floor_registered(state.management_url, store) as floor:
            message("latency: %d requests per model and image, concurrency 1, interleaved with the MMS floor"
                    % args.requests)
            cells = {(model, image): body for model in list(models) + [floor] for image, body in bodies.items()}
            latency = interleaved_latency(state.inference_url, cells, args.requests, args.warmup)
        floors = {image: {"p50_ms": latency.pop((floor, image))["p50_ms"]} for image in bodies}
    finally:
        server.stop(state)
    limits = {}
    load["in-process limit"] = load_average()
    for model in [m for m in (DEFAULT_MODEL, INT8_MODEL, resnet) if m in models]:
        limits[model] = run_limit(os.path.join(store, models[model]), list(images.values()),
                                  requests=args.limit_requests, warmup=args.warmup,
                                  log_dir=os.path.join(out, "limit-logs"), message=message)
    saturated = {}
    if not args.skip_throughput:
        load["throughput"] = load_average()
        saturated = throughput(store, {m: models[m] for m in (DEFAULT_MODEL, INT8_MODEL, resnet) if m in models},
                               images, args.throughput_requests, args.vcpus, out, message)
    result = assemble(models, images, latency, floors, limits, saturated, resnet)
    result.update({"load_average_at": load, "machine": machine_info(), "docs_handler_packed_by": packed_by, "seconds": time.time() - started,
                   "requests": args.requests, "limit_requests": args.limit_requests,
                   "throughput_requests": args.throughput_requests})
    return result


def assemble(models, images, latency, floors, limits, saturated, resnet):
    """The comparison rows (pure arithmetic on the measured figures)."""
    rows, tput = [], []
    docs = resnet + "-docs"
    #: whose fp32 in-process best a model is held to
    bases = {docs: resnet, INT8_MODEL: DEFAULT_MODEL}
    for model in models:
        base = bases.get(model, model)
        for image, path in images.items():
            key = os.path.abspath(path)
            cell = latency[(model, image)]
            engine, best = best_engine(limits.get(base), key)
            fused = ((limits.get(base) or {}).get("engines", {}).get("mxnet") or {}).get("inputs", {}).get(key, {})
            docs_p50 = latency.get((docs, image), {}).get("p50_ms") if model != docs and base == resnet else None
            floor = floors[image].get("p50_ms")
            ours = cell["p50_ms"] - floor if cell["p50_ms"] is not None and floor is not None else None
            rows.append({
                "model": model, "image": image, "handler": "docs-style" if model == docs else "mmsctl",
                "served_p50_ms": cell["p50_ms"], "ok": cell["ok"], "errors": cell["errors"],
                "top1": top1(cell["answer"]), "floor_ms": floor, "ours_ms": ours,
                "ours_over_best": _ratio(ours, (best or {}).get("total_ms")),
                "docs_p50_ms": docs_p50, "over_docs": _ratio(cell["p50_ms"], docs_p50),
                "best_engine": engine, "inprocess_best_ms": (best or {}).get("total_ms"),
                "over_best": _ratio(cell["p50_ms"], (best or {}).get("total_ms")),
                "fused_mxnet_ms": fused.get("total_ms"), "over_fused": _ratio(cell["p50_ms"], fused.get("total_ms")),
                "preprocess_ms": (best or {}).get("preprocess_ms"), "forward_ms": (best or {}).get("forward_ms"),
                "postprocess_ms": (best or {}).get("postprocess_ms")})
    for (model, image), figures in saturated.items():
        engine, best = best_engine(limits.get(model), os.path.abspath(images[image]))
        best_rps = (best or {}).get("rps")
        fp32 = saturated.get((DEFAULT_MODEL, image), {}).get("rps") if model == INT8_MODEL else None
        tput.append({"model": model, "image": image, "served_rps": figures["rps"],
                     "over_fp32_served": _ratio(figures["rps"], fp32),
                     "concurrency": figures["concurrency"], "workers": figures["workers"], "errors": figures["errors"], "best_engine": engine,
                     "inprocess_best_rps": best_rps, "ratio": _ratio(figures["rps"], best_rps)})
    return {"rows": rows, "throughput": tput, "targets": targets(rows, tput, resnet), "limits": limits}


def _ratio(a, b):
    return None if a is None or not b else a / b


def targets(rows, tput, resnet):
    checks = []

    def check(what, value, limit, at_most=True):
        met = None if value is None else (value <= limit if at_most else value >= limit)
        checks.append({"target": what, "value": value, "limit": limit, "met": met})

    for row in rows:
        if row["model"] == DEFAULT_MODEL:
            check("%s %s ours (p50 - floor) <= %.2fx in-process best" % (
                DEFAULT_MODEL, row["image"], TARGETS["default_ours_over_best"]),
                row["ours_over_best"], TARGETS["default_ours_over_best"])
        if row["model"] == INT8_MODEL:
            check("%s %s ours (p50 - floor) <= %.2fx fp32 in-process best" % (
                INT8_MODEL, row["image"], TARGETS["int8_ours_over_best"]),
                row["ours_over_best"], TARGETS["int8_ours_over_best"])
        if row["model"] == resnet:
            check("%s %s p50 <= %.2fx docs handler" % (resnet, row["image"], TARGETS["resnet_over_docs"]),
                  row["over_docs"], TARGETS["resnet_over_docs"])
            check("%s %s p50 <= %.2fx in-process MXNet fused" % (resnet, row["image"], TARGETS["resnet_over_fused"]),
                  row["over_fused"], TARGETS["resnet_over_fused"])
    for row in tput:
        check("%s %s throughput >= %.2fx in-process best" % (row["model"], row["image"], TARGETS["throughput"]),
              row["ratio"], TARGETS["throughput"], at_most=False)
        if row["model"] == INT8_MODEL:
            check("%s %s served throughput >= %.2fx fp32 archive's" % (
                INT8_MODEL, row["image"], TARGETS["int8_over_fp32_throughput"]),
                row["over_fp32_served"], TARGETS["int8_over_fp32_throughput"], at_most=False)
    return checks


def _f(value, digits=1):
    return "n/a" if value is None else "%.*f" % (digits, value)


def render(result):
    """The printed table (markdown)."""
    machine = result["machine"]
    lines = ["# Served vs docs-style handler vs in-process limit", "",
             "%s, %d vCPUs (%s), load average %s; %d requests per cell at concurrency 1 (interleaved), limit %d "
             "requests per engine and image; docs handler packed by %s." % (
                 machine["hostname"], machine["vcpus"], machine["cpu"], machine.get("load_average"),
                 result["requests"], result["limit_requests"], result["docs_handler_packed_by"]), "",
             "| model | image | handler | served p50 ms | MMS floor ms | ours ms | vs docs handler | in-process best "
             "ms (engine, fp32) | ours / best | served / best | in-process MXNet fused ms | served / fused | "
             "pre / fwd / post ms (best) | top-1 |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        lines.append("| %s | %s | %s | %s | %s | %s | %s | %s (%s) | %s | %s | %s | %s | %s / %s / %s | %s |" % (
            r["model"], r["image"], r["handler"], _f(r["served_p50_ms"]), _f(r["floor_ms"]), _f(r.get("ours_ms")),
            _f(r["over_docs"], 3), _f(r["inprocess_best_ms"]), r["best_engine"], _f(r.get("ours_over_best"), 3),
            _f(r["over_best"], 3), _f(r["fused_mxnet_ms"]),
            _f(r["over_fused"], 3), _f(r["preprocess_ms"]), _f(r["forward_ms"]), _f(r["postprocess_ms"], 2), r["top1"]))
    if result["throughput"]:
        lines += ["", "| model | image | cpu-throughput req/s (workers, clients) | in-process best req/s (engine, one "
                  "process, every core) | ratio | vs the fp32 archive served |", "|---|---|---|---|---|---|"]
        for r in result["throughput"]:
            lines.append("| %s | %s | %s (%d, %d) | %s (%s) | %s | %s |" % (
                r["model"], r["image"], _f(r["served_rps"], 2), r["workers"], r["concurrency"],
                _f(r["inprocess_best_rps"], 2), r["best_engine"], _f(r["ratio"], 3), _f(r.get("over_fp32_served"), 3)))
    if result.get("load_average_at"):
        lines += ["", "Load average (1, 5, 15 min) when each phase started: %s. The phases run one after the other: "
                  "on a busy machine compare only ratios measured within one phase (served vs docs handler)." % (
                      "; ".join("%s %s" % (phase, value) for phase, value in result["load_average_at"].items()))]
    lines += ["", "| target | value | |", "|---|---|---|"]
    for t in result["targets"]:
        lines.append("| %s | %s | %s |" % (t["target"], _f(t["value"], 3),
                                            "n/a" if t["met"] is None else ("met" if t["met"] else "NOT MET")))
    return "\n".join(lines) + "\n"


HELP = ("served vs MMS floor vs the in-process limit, fp32 vs int8, mmsctl vs a docs-style handler, one server, "
        "same-run ratios")
EXAMPLE = "mmsctl bench compare --out bench-compare\nmmsctl bench compare --layers 18 --requests 6 --out quick"


def add_options(parser):
    """The options of ``mmsctl bench compare``."""
    parser.add_argument("--out", default="bench-compare", help="work folder: store, logs, compare.json/.md")
    parser.add_argument("--layers", type=int, default=152, help="ResNet depth: 18, 34, 50, 101 or 152 (default 152)")
    parser.add_argument("--requests", type=int, default=20, help="served requests per model and image (default 20)")
    parser.add_argument("--limit-requests", type=int, default=10, help="in-process requests per engine and image")
    parser.add_argument("--throughput-requests", type=int, default=30, help="requests per saturated phase")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--skip-throughput", action="store_true", help="no cpu-throughput server")
    parser.add_argument("--vcpus", type=int, help="vCPUs the profiles plan for (default: detected)")
    parser.add_argument("--no-int8", action="store_true", help="leave out the default model's int8 archive")
    return parser


def main(args):
    if min(args.requests, args.limit_requests, args.throughput_requests) < 1 or args.warmup < 0:
        print("mmsctl: error: request counts must be at least 1 and --warmup not negative", file=sys.stderr)
        return 2

    def message(text):
        print(text, file=sys.stderr, flush=True)

    try:
        result = run(args, message)
    except MmsctlError as err:
        print("mmsctl: error: %s" % err, file=sys.stderr)
        return 1
    text = render(result)
    out = os.path.abspath(args.out)
    with open(os.path.join(out, "compare.json"), "w", encoding="utf-8") as handle:
        json.dump({k: v for k, v in result.items()}, handle, indent=2, default=str)
    with open(os.path.join(out, "compare.md"), "w", encoding="utf-8") as handle:
        handle.write(text)
    print(text)
    return 0
