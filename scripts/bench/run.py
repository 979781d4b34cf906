"""``mmsctl bench``: bounded load on loopback, latency and throughput statistics,
cost per 100k requests, and the reports (``report.json``, ``report.md``, ``report.png``).

The arithmetic is pure functions of known inputs (percentiles, requests/s, cost);
the load loop takes a sender factory, so one loop drives an HTTP server (one
keep-alive ``http.client`` connection per thread: little client work per request)
and the in-process runner's handler calls. Every loop ends by count or by time,
and a hard time limit bounds the count-bounded ones as well.

Cost per 100k requests = hourly price / (requests/s x 3600) x 100000, with prices
from ``config/prices.json`` (copied from the seed documents, each with its source)
or ``--price-per-hour``. The table follows seed 002's appendix (Table 1); the plot
is seed 004's cost performance against processing time.
"""
import os

from mmsctl.config import profiles
from mmsctl.errors import UsageError

from .errors import BenchError
from .inprocess import model_name_of, plan_levels, run_inprocess_bench
from .load import DEFAULT_REQUEST_TIMEOUT, HttpSender, check_loopback, describe_input, read_input, run_phase, timed_call
from .report import finish_report, first_request_entry, make_row, new_report, optimized_for, report_target
from .stats import summarize


def first_call(url, model, body, timeout=DEFAULT_REQUEST_TIMEOUT, sender_factory=HttpSender):
    """The first request, on a connection of its own: {"latency_ms", "status", "answer"}."""
    check_loopback(url)
    sender = sender_factory(url, model, body, timeout=timeout)
    try:
        latency, status = timed_call(sender)
        answer = (sender.last_body or b"")[:400].decode("utf-8", errors="replace")
    finally:
        sender.close()
    if status == "ConnectionRefusedError":
        raise BenchError("nothing answers at %s: is the server running? (mmsctl serve ...)" % url)
    return {"latency_ms": latency, "status": status, "answer": answer}


def bench_server(url, model, body, load, progress=None, sender_factory=HttpSender, first=None):
    """First request alone (unless ``first`` was already measured), warm-up at the
    highest concurrency, then one phase per concurrency level.

    Returns ``{"first_request": {...}, "phases": [PhaseResult, ...], "sample_answer": ...}``.
    """
    check_loopback(url)
    load.validate()
    make = lambda: sender_factory(url, model, body, timeout=load.timeout)  # noqa: E731
    if first is None:
        first = first_call(url, model, body, load.timeout, sender_factory)
    first_ms, first_status, sample = first["latency_ms"], first["status"], first["answer"]
    if load.warmup:
        senders = [make() for _ in range(max(load.concurrency))]
        try:
            run_phase(senders, requests=max(load.warmup, len(senders)), progress=progress, label="warm-up",
                      max_seconds=load.max_seconds)
        finally:
            for sender in senders:
                sender.close()
    phases = []
    for level in load.concurrency:
        senders = [make() for _ in range(level)]
        try:
            phases.append(run_phase(senders, requests=load.requests, duration=load.duration, progress=progress,
                                    label="c=%d" % level, max_seconds=load.max_seconds))
        finally:
            for sender in senders:
                sender.close()
    return {"first_request": {"latency_ms": first_ms, "status": first_status}, "phases": phases,
            "sample_answer": sample}


def run_server_bench(url, model, input_path, load, price, progress=None, message=None, config="server",
                     profile=None, workers=None, omp_threads=None, batch_size=1, report=None, first=None):
    """``mmsctl bench --url``: a report with one row per concurrency level."""
    body = read_input(input_path)
    if report is None:
        report = new_report("Benchmark of %s at %s" % (model, url), model, describe_input(input_path, body), load,
                            price, target={"url": url})
    if message:
        message("bench %s at %s: concurrency %s, %s per level" % (
            model, url, ",".join(map(str, load.concurrency)),
            "%d requests" % load.requests if load.requests else "%g s" % load.duration))
    result = bench_server(url, model, body, load, progress=progress, first=first)
    for phase in result["phases"]:
        report["rows"].append(make_row(
            "server", summarize(phase.samples, phase.elapsed_s, price.usd_per_hour, phase.cpu_s), phase.concurrency,
            config=config, label=config, optimized_for=optimized_for(profile),
            profile=profile, workers=workers, omp_threads=omp_threads, batch_size=batch_size, instance=price.label))
    report["first_requests"].append(first_request_entry(config, "server", result["first_request"]["latency_ms"],
                                                        result["first_request"]["status"], report["rows"],
                                                        batch_size=batch_size))
    report.setdefault("sample_answers", {})["%s batch %d" % (config, batch_size)] = result["sample_answer"]
    return report


def run_bench(input_path, load, price, url=None, model=None, inprocess_archive=None, profile_name=None,
              vcpus=None, progress=None, message=None, log_dir=None):
    """``mmsctl bench``: a server (``url``), the in-process limit (``inprocess_archive``), or both.

    ``profile_name`` is the server's profile (its workers and threads); the
    in-process pipelines use its thread settings, so both sides of a comparison
    run the same numbers of threads. Without a profile, the in-process run puts
    ``level`` pipelines on the vCPUs (vCPUs // level threads each).
    """
    if url is None and inprocess_archive is None:
        raise UsageError("give --url URL --model NAME (a running server) and/or --inprocess/--compare-inprocess "
                         "FILE.mar")
    if url is not None and not model:
        raise UsageError("--url needs --model NAME (the model's name on the server)")
    if url is not None:
        check_loopback(url)
    if inprocess_archive is not None and not os.path.isfile(inprocess_archive):
        raise UsageError("archive %s does not exist" % inprocess_archive)
    load.validate()
    profile = profiles.build_profile(profile_name or "cpu-latency", vcpus=vcpus)
    body = read_input(input_path)
    if model is None:
        model = model_name_of(inprocess_archive)
    title = "Benchmark of %s" % model + (" at %s" % url if url else " in-process")
    report = new_report(title, model, describe_input(input_path, body), load, price,
                        target=report_target(url, inprocess_archive, profile_name, profile.vcpus))
    config = profile_name or ("server" if url else "in-process")
    if url is not None:
        run_server_bench(url, model, input_path, load, price, progress=progress, message=message, config=config,
                         profile=profile_name, workers=profile.workers if profile_name else None,
                         omp_threads=profile.omp_threads if profile_name else None, report=report)
    if inprocess_archive is not None:
        if profile_name or url is not None:
            plan = plan_levels(load.concurrency, profile.vcpus, workers=profile.workers, threads=profile.omp_threads)
        else:
            plan = plan_levels(load.concurrency, profile.vcpus)
        run_inprocess_bench(inprocess_archive, input_path, load, plan, profile.environment, report, config=config,
                            log_dir=log_dir, progress=progress, message=message, model_name=model)
        if url is not None:
            report["notes"].append("the server kept running (idle) while the in-process pipelines ran")
            if not profile_name:
                report["notes"].append("no --profile given: the server was assumed to run cpu-latency (%d worker x "
                                       "%d threads) for the in-process side" % (profile.workers, profile.omp_threads))
    return finish_report(report)
