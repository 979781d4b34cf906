"""``mmsctl bench`` (a server, the in-process limit, or both), ``bench sweep``, ``bench random-resnet``, and the
named measuring scenarios of :data:`SCENARIOS` (``bench compare``, ``bench profiles``, ...)."""
import os
import sys

from .. import bench
from ..bench import compare_handlers, compare_servers, onnx_latency, prove_profiles, request_costs, sweep, two_models
from ..bench.limit import add_limit
from ..bench.reference import add_floor
from ..errors import UsageError
from ..metrics import overhead
from ..quickstart import bundled_image
from .common import command

#: ``mmsctl bench NAME``: one measuring question each. A scenario module has ``HELP`` (one line), ``EXAMPLE``
#: (``mmsctl bench NAME ...`` lines), ``add_options(parser)`` and ``main(args)`` (the exit status); its errors
#: are :class:`~mmsctl.errors.MmsctlError`, one line from :func:`mmsctl.cli.main`.
SCENARIOS = {
    "compare": compare_handlers,
    "request-costs": request_costs,
    "two-models": two_models,
    "profiles": prove_profiles,
    "onnx-latency": onnx_latency,
    "servers": compare_servers,
    "exporter-overhead": overhead,
}


def add_load_options(parser):
    parser.add_argument("--input", help="file sent as each request's body (default: scikit-image's "
                                        "chelsea.png, a CC0 cat photo)")
    parser.add_argument("--concurrency", default="1,2", help="client threads per level, e.g. 1,2,4 (default 1,2)")
    amount = parser.add_mutually_exclusive_group()
    amount.add_argument("--requests", type=int, help="requests per level (default 50 unless --duration)")
    amount.add_argument("--duration", type=float, help="seconds per level")
    parser.add_argument("--warmup", type=int, default=5, help="requests sent before measuring (default 5)")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds one request may take")
    parser.add_argument("--instance", help="instance type to price this machine as (config/prices.json), "
                                           "e.g. m5.large")
    parser.add_argument("--accelerator", help="accelerator added to the price, e.g. eia1.medium")
    parser.add_argument("--price-per-hour", type=float, help="hourly price in USD (instead of the table)")
    parser.add_argument("--vcpus", type=int, help="vCPUs the profiles plan for (default: detected)")
    parser.add_argument("--out", help="folder for report.json, report.md and report.png (required)")


def prepared(args):
    """The load, the price and the progress printer of a bench or sweep command."""
    if not args.out:
        raise UsageError("--out DIR is required: the folder for report.json, report.md and report.png")
    load = bench.LoadConfig(concurrency=tuple(bench.parse_levels(args.concurrency)),
                            requests=args.requests if args.requests or args.duration else 50,
                            duration=args.duration, warmup=args.warmup, timeout=args.timeout).validate()
    price = bench.resolve_price(bench.load_prices(), args.instance, args.accelerator, args.price_per_hour)
    if args.input is None:
        args.input = bundled_image()
    return load, price, bench.TerminalProgress(sys.stderr)


def written(report, args, progress):
    """Write the report files, print the targets and the markdown's path."""
    paths = bench.write_reports(report, args.out)
    progress.message("wrote %s, %s, %s" % (paths["json"], paths["md"], paths["png"]))
    for target in report.get("targets", []):
        progress.message("  %-48s %-16s %.3f %s" % (target["target"], target["config"], target["value"],
                                                    "met" if target["met"] else "NOT MET"))
    print(paths["md"])
    return 0


def cmd_bench(args):
    if args.inprocess and args.compare_inprocess:
        raise UsageError("give --inprocess FILE.mar (no server) or --compare-inprocess FILE.mar (with --url)")
    if args.inprocess and args.url:
        raise UsageError("--inprocess runs without a server: drop --url, or use --compare-inprocess")
    if args.compare_inprocess and not args.url:
        raise UsageError("--compare-inprocess needs --url URL --model NAME of a server on the same archive")
    load, price, progress = prepared(args)
    report = bench.run_bench(args.input, load, price, url=args.url, model=args.model,
                             inprocess_archive=args.inprocess or args.compare_inprocess, profile_name=args.profile,
                             vcpus=args.vcpus, progress=progress, message=progress.message,
                             log_dir=os.path.join(os.path.abspath(args.out), "inprocess-logs"))
    archive = args.inprocess or args.compare_inprocess
    if archive:
        add_limit(report, archive, load, message=progress.message,
                  log_dir=os.path.join(os.path.abspath(args.out), "inprocess-logs", "limit"))
    if args.url and args.management_url and args.model_store:
        add_floor(report, args.profile or "server", args.management_url, args.url, args.model_store,
                  requests=load.requests or 20, warmup=min(load.warmup, 5))
    elif args.url:
        report["notes"].append("MMS floor not measured: give --management-url URL and --model-store DIR of "
                               "the server to register a no-op handler on it")
    return written(bench.finish_report(report), args, progress)


def cmd_sweep(args):
    load, price, progress = prepared(args)
    config = sweep.SweepConfig(
        archive=args.archive, input=args.input, out=args.out, load=load,
        profiles=tuple(p for p in args.profiles.split(",") if p),
        batch_sizes=tuple(bench.parse_levels(args.batch_sizes)), max_batch_delay=args.max_batch_delay,
        vcpus=args.vcpus, inprocess=not args.no_inprocess, keep_server_files=args.keep_server_files,
        unpacked=args.unpacked)
    return written(sweep.run(config, price, progress=progress, message=progress.message), args, progress)


def cmd_random_resnet(args):
    print(sweep.build_random_resnet(args.export_path, layers=args.layers, name=args.name, seed=args.seed,
                                    force=args.force))


def add_commands(sub):
    """``mmsctl bench`` (a server, the in-process limit, or both), ``bench sweep``, the scenarios of
    :data:`SCENARIOS` and ``bench random-resnet``."""
    parser = command(sub, "bench",
                     "latency, throughput and cost per 100k requests of a server or of the in-process limit",
                     "mmsctl bench --url http://127.0.0.1:8080 --model efficientnet-lite0 --input chelsea.png \\\n"
                      "    --concurrency 1,2 --requests 100 --instance m5.large --out bench-out\n"
                      "mmsctl bench --inprocess model_store/efficientnet-lite0.mar --input chelsea.png --out inproc\n"
                      "mmsctl bench sweep --archive model_store/resnet-152.mar --profiles cpu-latency,cpu-throughput "
                      "--instance m5.large --out sweep")
    parser.add_argument("--url", help="inference API of a server on this machine, e.g. http://127.0.0.1:8080")
    parser.add_argument("--model", help="model name on the server")
    parser.add_argument("--inprocess", metavar="FILE.mar", help="run the archive's own handler in-process, no server")
    parser.add_argument("--compare-inprocess", metavar="FILE.mar",
                        help="also run this archive in-process and report overhead = server p50 / in-process p50")
    parser.add_argument("--profile", choices=["cpu-latency", "cpu-throughput"],
                        help="the server's profile (workers x threads, for the report and the in-process side)")
    parser.add_argument("--management-url", help="the server's management API: with --model-store, the MMS floor "
                                                 "(a no-op handler) is registered there and measured")
    parser.add_argument("--model-store", help="the server's model store (the floor model is written into it)")
    add_load_options(parser)
    parser.set_defaults(func=cmd_bench)
    kinds = parser.add_subparsers(dest="bench_action", metavar="ACTION")

    sweep_parser = command(kinds, "sweep",
                           "one server per profile and batch size, the same load, one combined table and plot",
                           "mmsctl bench sweep --archive model_store/resnet-152.mar --profiles cpu-latency,cpu-throughput "
                            "\\\n    --batch-sizes 1,4 --concurrency 1,2,4 --duration 20 --instance m5.large --out sweep")
    sweep_parser.add_argument("--archive", required=True, help="FILE.mar (its folder is the servers' model store)")
    sweep_parser.add_argument("--profiles", default="cpu-latency,cpu-throughput",
                              help="profiles, comma-separated (default cpu-latency,cpu-throughput)")
    sweep_parser.add_argument("--batch-sizes", default="1", help="server-side batch sizes, e.g. 1,4 (default 1)")
    sweep_parser.add_argument("--max-batch-delay", type=int, default=50, help="ms MMS waits to fill a batch")
    sweep_parser.add_argument("--no-inprocess", action="store_true",
                              help="skip the in-process runs (the archive's pipelines and the independent limit)")
    sweep_parser.add_argument("--keep-server-files", action="store_true",
                              help="keep each server's tmp folder (unpacked archive) next to its logs")
    sweep_parser.add_argument("--unpacked", action="store_true",
                              help="extract the archive once into OUT/store/ and serve that folder (MMS unzips a "
                                   ".mar at every start, a folder not at all)")
    add_load_options(sweep_parser)
    sweep_parser.set_defaults(func=cmd_sweep)

    for name, module in SCENARIOS.items():
        scenario = command(kinds, name, module.HELP, module.EXAMPLE)
        module.add_options(scenario)
        scenario.set_defaults(func=module.main)

    resnet = command(kinds, "random-resnet",
                     "archive a Gluon model-zoo ResNet v1 with random weights (a big model to bench)",
                     "mmsctl bench random-resnet --layers 152 --export-path model_store")
    resnet.add_argument("--layers", type=int, default=152, help="18, 34, 50, 101 or 152 (default 152)")
    resnet.add_argument("--name", help="model name (default resnet-LAYERS)")
    resnet.add_argument("--seed", type=int, default=0)
    resnet.add_argument("--export-path", default=".", help="folder the archive is written to")
    resnet.add_argument("--force", action="store_true", help="overwrite an existing archive")
    resnet.set_defaults(func=cmd_random_resnet)
