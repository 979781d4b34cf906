"""``mmsctl soak``: full-concurrency load for a long time, with errors, latency and worker memory."""
import sys

from .. import server
from ..bench import soak
from ..management import ManagementClient
from .common import command


def cmd_soak(args):
    state = server.ServerState.load(args.state_dir)
    workers = ManagementClient(state.management_url, timeout=10).ready_workers(args.model)[1]
    limits = soak.Limits(max_errors=args.max_errors, max_growth_mib=args.max_growth_mib,
                         max_growth_fraction=args.max_growth_percent / 100.0, warmup_intervals=args.warmup_intervals)

    def progress(row):
        print("t=%4.0fs  %6d requests  %3d errors  p99 %s ms  worker RSS %s MiB" % (
            row["end_s"], row["requests"], row["errors"],
            "-" if row["p99_ms"] is None else "%.1f" % row["p99_ms"], row.get("worker_rss_mib", "-")), file=sys.stderr)

    report = soak.run_soak(state.inference_url, args.model, soak.read_body(args.input), duration=args.duration,
                           interval=args.interval, concurrency=args.concurrency or soak.default_concurrency(workers),
                           server_pid=state.pid, timeout=args.timeout, limits=limits, progress=progress)
    soak.write_report(report, args.out)
    print(soak.render_table(report))
    print("report: %s" % args.out)
    if report["problems"]:
        raise soak.SoakError("soak failed: " + "; ".join(report["problems"]))
    return 0


def add_commands(sub):
    cmd = command(sub, "soak", "full-concurrency load for a long time: errors, latency and worker memory per interval",
                  "mmsctl serve --profile cpu-latency --model-store model_store "
                   "--models efficientnet-lite0=efficientnet-lite0.mar\n"
                   "mmsctl soak --model efficientnet-lite0 --input chelsea.png --duration 600 --out soak.json")
    cmd.add_argument("--model", required=True, help="registered model to load")
    cmd.add_argument("--input", required=True, metavar="FILE", help="request body sent every time (an image...)")
    cmd.add_argument("--state-dir", default=server.default_state_dir(),
                     help="state folder of the server `mmsctl serve` started (URLs and pid; default %(default)s)")
    cmd.add_argument("--duration", type=float, default=soak.DEFAULT_DURATION, help="seconds (default 600)")
    cmd.add_argument("--interval", type=float, default=soak.DEFAULT_INTERVAL, help="seconds per row (default 60)")
    cmd.add_argument("--concurrency", type=int, help="client threads (default: 2 per worker of the model)")
    cmd.add_argument("--timeout", type=float, default=soak.DEFAULT_TIMEOUT, help="seconds per request (default 60)")
    cmd.add_argument("--out", default="soak.json", help="JSON report (default soak.json)")
    cmd.add_argument("--max-errors", type=int, default=0, help="failed requests allowed (default 0)")
    cmd.add_argument("--max-growth-mib", type=float, default=100.0,
                     help="worker RSS growth allowed after warm-up, MiB (default 100)")
    cmd.add_argument("--max-growth-percent", type=float, default=20.0,
                     help="worker RSS growth allowed after warm-up, percent (default 20)")
    cmd.add_argument("--warmup-intervals", type=int, default=1, help="intervals before the RSS baseline (default 1)")
    cmd.set_defaults(func=cmd_soak)
