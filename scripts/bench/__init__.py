"""``mmsctl bench`` and the benchmark scripts, one module per job; imports run one way, bottom to top:

==================  ===============================================================================
stats               pure statistics: percentiles, requests/s, cost per 100k requests
errors              :class:`BenchError`
load                the one load generator (closed loop of N client threads, by count or duration;
                    interleaved turns), :class:`HttpSender`, loopback checks, :class:`LoadConfig`
breakdown           where a served request's time goes against the limit (report section)
render              report.md, report.png, terminal progress (tqdm)
report              report rows, comparison, targets, report.json/.md/.png writers
mmslog              MMS log parsing: cold-start markers, request times
inprocess           the archive's handler without a server: pipeline child and parent
limit               the independent limit (MXNet fused, onnxruntime), one process, every core
reference           the MMS floor (a no-op handler) and the user's docs handler
random_resnet       a ResNet archive with random weights
run                 ``mmsctl bench``: server and/or in-process runs into one report
sweep               ``mmsctl bench sweep``: seed 002's table over profiles and batch sizes
soak                ``mmsctl soak``: hours of load, memory and error verdict
shared              what the scenarios share: request body, model store, archive, aligned table
compare_handlers    ``mmsctl bench compare`` (named so: ``compare`` is the report function)
request_costs       ``mmsctl bench request-costs``
prove_profiles      ``mmsctl bench profiles``
two_models          ``mmsctl bench two-models``
onnx_latency        ``mmsctl bench onnx-latency``
compare_servers     ``mmsctl bench servers`` (MMS vs TorchServe)
==================  ===============================================================================

The price table's loader lives beside the table, in :mod:`mmsctl.config.prices`. The scenarios run as
``mmsctl bench NAME`` (the table is :data:`mmsctl.cli.bench.SCENARIOS`; ``exporter-overhead`` lives with the
metrics, in :mod:`mmsctl.metrics.overhead`); ``mmsctl.inprocess`` in ``scripts/`` is the in-process child's
entry point.
This package re-exports the names ``mmsctl.cli`` and the tests use as ``bench.NAME``.
"""
from mmsctl.config.prices import Price, load_prices, prices_path, resolve_price  # noqa: F401

from .errors import BenchError  # noqa: F401
from .load import (DEFAULT_MAX_SECONDS, DEFAULT_REQUEST_TIMEOUT, ClosedLoop, HttpSender, LoadConfig,  # noqa: F401
                   PhaseResult, check_loopback, describe_input, free_port, interleaved, parse_levels, read_input,
                   run_phase, timed_call)
from .render import TerminalProgress, render_markdown, write_plot  # noqa: F401
from .report import (REPORT_FORMAT, TARGETS, check_targets, compare, finish_report, first_request_entry,  # noqa: F401
                     machine_info, make_row, new_report, optimized_for, report_target, write_reports)
from .run import bench_server, first_call, run_bench, run_server_bench  # noqa: F401
from .stats import (PERCENTILES, cost_per_100k, is_success, latency_summary, percentile, ratio,  # noqa: F401
                    requests_per_second, summarize, thousand_requests_per_usd)
