"""The metrics options of ``mmsctl serve`` and the ``mmsctl top`` command (wired in mmsctl.cli)."""
import argparse
import sys

from mmsctl import server
from mmsctl.errors import ServerError

from . import runner, top
from .exporter import DEFAULT_PORT


def add_serve_options(parser):
    group = parser.add_argument_group("metrics and health (mmsctl.metrics)")
    group.add_argument("--metrics-port", type=int, default=None,
                       help="port of the exporter: Prometheus /metrics, /healthz and /readyz (default %d; 0: none); "
                            "on 127.0.0.1, or 0.0.0.0 with --public" % DEFAULT_PORT)
    group.add_argument("--emf", action="store_true",
                       help="write CloudWatch Embedded Metric Format lines to stdout (per model per minute)")


def plan(args):
    """Where to start the exporter: {"host", "port"}, with "skip" (a warning) when the default port is
    taken; None for --metrics-port 0. A taken port given with --metrics-port is refused at once."""
    port = DEFAULT_PORT if args.metrics_port is None else args.metrics_port
    if port == 0:
        return None
    where = {"host": "0.0.0.0" if args.public else "127.0.0.1", "port": port, "skip": None}
    try:
        runner.check_port(where["host"], port)
    except ServerError as err:
        if args.metrics_port is not None:
            raise
        where["skip"] = "serving without the metrics exporter: %s" % err
    return where


def _skipped(where):
    if where["skip"]:
        print("mmsctl: warning: " + where["skip"], file=sys.stderr)
        return True
    return False


def start_child(where, state, emf=False):
    """Start the exporter child for a background server; its URL (None when skipped; stops the server
    if the exporter fails)."""
    if where is None or _skipped(where):
        return None
    runner.clear(state.state_dir)
    try:
        return runner.start_child(state.state_dir, host=where["host"], port=where["port"], emf=emf)
    except ServerError:
        server.stop(state)
        raise


def start_in_process(where, state, emf=False):
    """The exporter of a foreground server, in this process (None when skipped)."""
    if where is None or _skipped(where):
        return None
    runner.clear(state.state_dir)
    return runner.start_in_process(state.state_dir, host=where["host"], port=where["port"],
                                   emf_stream=sys.stdout if emf else None)


def stop(state_dir):
    runner.stop_child(state_dir)


def cmd_top(args):
    url = args.url or runner.metrics_url(args.state_dir)
    if not url:
        raise ServerError("no metrics exporter recorded in %s: start the server with `mmsctl serve` "
                          "(--metrics-port), or pass --url" % args.state_dir)
    return top.run(url, interval=args.interval, iterations=args.iterations)


def add_top_command(sub):
    cmd = sub.add_parser("top", help="live per-model requests/s, p50/p99, workers and memory from the exporter",
                         formatter_class=argparse.RawDescriptionHelpFormatter,
                         epilog="example:\n  mmsctl top\n  mmsctl top --url http://127.0.0.1:8082 --iterations 1")
    cmd.add_argument("--state-dir", default=server.default_state_dir(),
                     help="state folder of the server (its exporter's URL; default %(default)s)")
    cmd.add_argument("--url", help="exporter URL instead, e.g. http://127.0.0.1:8082")
    cmd.add_argument("--interval", type=float, default=2.0, help="seconds between refreshes (default 2)")
    cmd.add_argument("--iterations", type=int, help="refreshes before exiting (default: until Ctrl-C)")
    cmd.set_defaults(func=cmd_top)
