"""Where a served request's time goes, against the independent in-process limit (pure).

For each server configuration at concurrency 1 the report gets one line:

* **MMS floor**: p50 round trip of a no-op handler on the same server, same body
  (``reference_handlers/noop_service.py``, measured in the same run);
* **preprocessing, forward, postprocessing**: p50 of each part in-process, for the
  fastest engine of the independent limit (``mmsctl.bench.limit``);
* **served p50**, and ``served / in-process best``; ``served - floor - best`` is what
  neither the floor nor the model's own work explains.

Nothing here measures: these functions turn a report's figures into the lines
and the markdown section.
"""

#: issue 11: served p50 at concurrency 1 at most this many times the in-process best
TARGET_SERVED_OVER_BEST = 1.25
#: issue 11: saturated throughput at least this fraction of the in-process best
TARGET_THROUGHPUT = 0.95


def _ratio(numerator, denominator):
    if numerator is None or not denominator:
        return None
    return numerator / denominator


def _minus(value, *others):
    if value is None or any(other is None for other in others):
        return None
    return value - sum(others)


def best_engine(limit, input_key):
    """(engine name, its figures) of the fastest available engine on ``input_key``, or (None, None).

    >>> best_engine({"engines": {"mxnet": {"available": True, "inputs": {"a": {"total_ms": 12.0}}},
    ...     "onnxruntime": {"available": True, "inputs": {"a": {"total_ms": 9.0}}}}}, "a")[0]
    'onnxruntime'
    >>> best_engine({"engines": {"mxnet": {"available": False, "why": "no checkpoint"}}}, "a")
    (None, None)
    """
    candidates = [(entry["inputs"][input_key]["total_ms"], name, entry["inputs"][input_key])
                  for name, entry in (limit or {}).get("engines", {}).items()
                  if entry.get("available") and input_key in entry.get("inputs", {})]
    if not candidates:
        return None, None
    _, name, figures = min(candidates, key=lambda item: (item[0], item[1]))
    return name, figures


def line(config, input_name, served_p50_ms, floor_ms, limit, input_key):
    """One breakdown line: the served p50 against the floor and the limit's parts.

    >>> limit = {"engines": {"mxnet": {"available": True, "inputs": {"x": {"preprocess_ms": 4.0,
    ...     "forward_ms": 14.0, "postprocess_ms": 0.5, "total_ms": 18.5}}}, "onnxruntime": {"available": True,
    ...     "inputs": {"x": {"preprocess_ms": 4.0, "forward_ms": 10.0, "postprocess_ms": 0.5, "total_ms": 14.5}}}}}
    >>> row = line("cpu-latency", "x.png", 20.0, 3.0, limit, "x")
    >>> row["best_engine"], row["served_over_best"], row["unexplained_ms"], row["engines"]["mxnet"]
    ('onnxruntime', 1.3793103448275863, 2.5, 18.5)
    """
    engine, figures = best_engine(limit, input_key)
    figures = figures or {}
    best = figures.get("total_ms")
    engines = {}
    for name, entry in (limit or {}).get("engines", {}).items():
        engines[name] = (entry["inputs"][input_key]["total_ms"] if entry.get("available")
                         and input_key in entry.get("inputs", {}) else None)
    served_over_best = _ratio(served_p50_ms, best)
    return {
        "config": config, "input": input_name, "served_p50_ms": served_p50_ms, "floor_ms": floor_ms,
        "best_engine": engine, "preprocess_ms": figures.get("preprocess_ms"), "forward_ms": figures.get("forward_ms"),
        "postprocess_ms": figures.get("postprocess_ms"), "inprocess_best_ms": best, "engines": engines,
        "served_over_best": served_over_best,
        "best_plus_floor_ms": None if best is None or floor_ms is None else best + floor_ms,
        "served_over_best_plus_floor": _ratio(served_p50_ms, None if best is None or floor_ms is None
                                              else best + floor_ms),
        "unexplained_ms": _minus(served_p50_ms, floor_ms, best),
        "target": TARGET_SERVED_OVER_BEST,
        "met": None if served_over_best is None else served_over_best <= TARGET_SERVED_OVER_BEST,
    }


def limit_rps(limit, input_key):
    """Requests/s of the limit's fastest engine on ``input_key`` (one process, every core)."""
    return (best_engine(limit, input_key)[1] or {}).get("rps")


def report_breakdown(report):
    """The breakdown of a bench/sweep report that has a ``limit`` (else None): one line per
    server configuration at concurrency 1, and the saturated throughput against the limit's."""
    limit = report.get("limit")
    if not limit:
        return None
    key = report["input"]["path"]
    floors = report.get("floor") or {}
    name = report["input"]["path"].rsplit("/", 1)[-1]
    lines = []
    for row in report["rows"]:
        if row["kind"] == "server" and row["concurrency"] == 1 and (row.get("batch_size") or 1) == 1:
            floor = (floors.get(row["config"]) or {}).get("p50_ms")
            lines.append(line(row["config"], name, row["latency_ms"]["p50"], floor, limit, key))
    best_server = max((r["rps"] or 0 for r in report["rows"] if r["kind"] == "server"), default=0) or None
    inprocess = limit_rps(limit, key)
    ratio = _ratio(best_server, inprocess)
    return {"lines": lines, "best_server_rps": best_server, "limit_rps": inprocess, "throughput_ratio": ratio,
            "throughput_target": TARGET_THROUGHPUT,
            "throughput_met": None if ratio is None else ratio >= TARGET_THROUGHPUT}


# -- markdown ----------------------------------------------------------------------------------------
def _fmt(value, digits=1):
    return "n/a" if value is None else "%.*f" % (digits, value)


def _table(header, body):
    out = ["|" + "|".join(header) + "|", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join(out + ["|" + "|".join(str(cell) for cell in cells) + "|" for cells in body])


def _verdict(met):
    return "n/a" if met is None else ("met" if met else "**not met**")


def render_limit(limit):
    """Markdown lines: each engine of the independent limit on each input, or why it did not run."""
    lines = ["## Independent in-process limit", "",
             "One process with %d threads, no server, the archive's preprocessing with the newest decoder here "
             "(%s), each engine on the same weights (not the archive's engine choice); p50 per part over %s "
             "requests." % (limit.get("threads", 0), limit.get("decoder", "the archive's own"),
                            ", ".join(sorted({str(f["requests"]) for e in limit["engines"].values()
                                              for f in e.get("inputs", {}).values()})) or "0"), ""]
    body = []
    for key in limit.get("inputs", []):
        best = limit.get("best", {}).get(key)
        for name, entry in sorted(limit["engines"].items()):
            short = key.rsplit("/", 1)[-1]
            if not entry.get("available"):
                body.append([short, name, "unavailable: " + entry.get("why", "?")] + ["n/a"] * 6)
                continue
            f = entry["inputs"][key]
            body.append([short, name + (" (best)" if name == best else ""), entry.get("how", ""),
                         _fmt(f["preprocess_ms"]), _fmt(f["forward_ms"]), _fmt(f["postprocess_ms"], 2),
                         _fmt(f["total_ms"]), _fmt(f["rps"], 2), f.get("top1", "")])
    lines += [_table(["Input", "Engine", "How", "preprocess ms", "forward ms", "postprocess ms", "total p50 ms",
                      "req/s", "top-1"], body), ""]
    return lines


def render(report):
    """The markdown sections of the limit and the breakdown (empty without a limit)."""
    if not report.get("limit"):
        return ""
    lines = render_limit(report["limit"])
    breakdown = report.get("breakdown") or {}
    if breakdown.get("lines"):
        lines += ["## Per-request breakdown (concurrency 1)", "",
                  "MMS floor: a no-op handler on the same server, same body, measured in this run. Parts: the "
                  "limit's fastest engine. served / best = served p50 / in-process best (target <= %.2f)." % (
                      TARGET_SERVED_OVER_BEST), ""]
        body = [[b["config"], b["input"], _fmt(b["floor_ms"]), _fmt(b["preprocess_ms"]), _fmt(b["forward_ms"]),
                 _fmt(b["postprocess_ms"], 2), "%s (%s)" % (_fmt(b["inprocess_best_ms"]), b["best_engine"]),
                 " / ".join("%s %s" % (name, _fmt(ms)) for name, ms in sorted(b["engines"].items())),
                 _fmt(b["served_p50_ms"]), _fmt(b["served_over_best"], 3), _fmt(b["served_over_best_plus_floor"], 3),
                 _fmt(b["unexplained_ms"]), _verdict(b["met"])] for b in breakdown["lines"]]
        lines += [_table(["Configuration", "Input", "MMS floor ms", "preprocess ms", "forward ms", "postprocess ms",
                          "in-process best ms", "engines ms", "served p50 ms", "served / best",
                          "served / (best + floor)", "served - floor - best ms", "target"], body), ""]
    if breakdown.get("limit_rps"):
        lines += ["Saturated throughput: best server %s req/s, in-process best %s req/s (one process, every core): "
                  "ratio %s (target >= %.2f: %s)." % (
                      _fmt(breakdown["best_server_rps"], 2), _fmt(breakdown["limit_rps"], 2),
                      _fmt(breakdown["throughput_ratio"], 3), TARGET_THROUGHPUT, _verdict(breakdown["throughput_met"])),
                  ""]
    return "\n".join(lines) + "\n"
