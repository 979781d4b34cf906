"""``mmsctl``: one command line over the library, one subcommand per job.

Every subcommand parses options, calls library code and prints; library errors
are typed and become one line on stderr and a non-zero exit here, nowhere else.
"""
import argparse
import json
import os
import sys

from mmsctl.archives.errors import ArchiveError
from mmsctl.config.profiles import PROFILES, ProfileError

from . import __version__
from .errors import MmsctlError, UsageError

DESCRIPTION = "Build, serve and deploy MXNet Model Server (.mar) archives."


def _example(text):
    return "example:\n  " + "\n  ".join(text.strip().splitlines())


def _floats(text):
    try:
        return [float(x) for x in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError("expected numbers separated by commas, got %r" % text)


def _model_pair(text):
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError("expected NAME=FILE.mar, got %r" % text)
    return name, path


def _print_json(value):
    print(json.dumps(value, indent=2))


# -- archive ------------------------------------------------------------------
def cmd_archive_resnet(args):
    from mmsctl.archives import builder, mxnet_checkpoint
    config = mxnet_checkpoint.ResnetConfig(
        name=args.name, symbol=args.symbol, params=args.params, synset=args.synset, export_path=args.export_path,
        input_shape=builder.parse_shape(args.input_shape), preprocess=args.preprocess, resize=args.resize,
        mean=args.mean, std=args.std, channel_order=args.channel_order, interpolation=args.interpolation,
        topk=args.topk, force=args.force)
    print(mxnet_checkpoint.build(config))


def cmd_archive_efficientnet(args):
    from mmsctl.archives import mxnet_checkpoint
    print(mxnet_checkpoint.build_efficientnet_lite0(args.export_path, name=args.name, force=args.force))


def cmd_archive_inspect(args):
    from mmsctl.archives import mar
    info = mar.describe(args.archive)
    if args.json:
        _print_json(info)
        return
    print("archive: %s" % info["path"])
    print("manifest:")
    print("  " + json.dumps(info["manifest"], indent=2, sort_keys=True).replace("\n", "\n  "))
    print("entries:")
    for entry in info["entries"]:
        print("  %12d  %-8s %s" % (entry["size"], "stored" if entry["stored"] else "deflated", entry["name"]))


def add_archive_commands(sub):
    archive = sub.add_parser("archive", help="build and inspect .mar archives",
                             epilog=_example("mmsctl archive efficientnet-lite0 --export-path model_store"),
                             formatter_class=argparse.RawDescriptionHelpFormatter)
    kinds = archive.add_subparsers(dest="kind", metavar="KIND", required=True)

    resnet = kinds.add_parser(
        "resnet", help="archive an MXNet symbol + params image classifier (ResNet family)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=_example("mmsctl archive resnet --name resnet-152 --symbol resnet-152-symbol.json \\\n"
                        "    --params resnet-152-0000.params --synset synset.txt --preprocess raw "
                        "--export-path model_store"))
    resnet.add_argument("--name", required=True, help="model name (MMS pattern ^[A-Za-z0-9][A-Za-z0-9_.-]*$)")
    resnet.add_argument("--symbol", required=True, help="X-symbol.json")
    resnet.add_argument("--params", required=True, help="X-0000.params")
    resnet.add_argument("--synset", required=True, help="labels, one per class, e.g. 'n02123045 tabby, tabby cat'")
    resnet.add_argument("--export-path", default=".", help="folder the NAME.mar is written to (default: .)")
    resnet.add_argument("--input-shape", default="1,3,224,224",
                        help="N,C,H,W; N is the batch the handler runs at once (default 1,3,224,224)")
    resnet.add_argument("--preprocess", default="imagenet", choices=["imagenet", "raw", "efficientnet"],
                        help="pixel normalisation: imagenet mean/std (Gluon zoo), raw 0-255 (classic MMS "
                             "resnet-152), efficientnet (x-127)/128 (default imagenet)")
    resnet.add_argument("--resize", type=int, help="shorter side before the centre crop (default H*256/224)")
    resnet.add_argument("--mean", type=_floats, help="per-channel mean on 0-255 pixels, e.g. 123.675,116.28,103.53")
    resnet.add_argument("--std", type=_floats, help="per-channel std on 0-255 pixels")
    resnet.add_argument("--channel-order", choices=["RGB", "BGR"])
    resnet.add_argument("--interpolation", default="bilinear", choices=["bilinear", "bicubic", "nearest", "lanczos"])
    resnet.add_argument("--topk", type=int, default=5, help="classes in each answer (default 5)")
    resnet.add_argument("--force", action="store_true", help="overwrite an existing archive")
    resnet.set_defaults(func=cmd_archive_resnet)

    eff = kinds.add_parser(
        "efficientnet-lite0", help="the default archive: EfficientNet-Lite0 with real ImageNet weights (offline)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=_example("mmsctl archive efficientnet-lite0 --export-path model_store"))
    eff.add_argument("--export-path", default=".", help="folder the archive is written to (default: .)")
    eff.add_argument("--name", default="efficientnet-lite0", help="model name (default efficientnet-lite0)")
    eff.add_argument("--force", action="store_true", help="overwrite an existing archive")
    eff.set_defaults(func=cmd_archive_efficientnet)

    inspect = kinds.add_parser("inspect", help="print an archive's manifest, entries and sizes",
                               formatter_class=argparse.RawDescriptionHelpFormatter,
                               epilog=_example("mmsctl archive inspect model_store/efficientnet-lite0.mar"))
    inspect.add_argument("archive", help="FILE.mar")
    inspect.add_argument("--json", action="store_true", help="print JSON (manifest, signature, entries)")
    inspect.set_defaults(func=cmd_archive_inspect)


# -- config, serve, stop --------------------------------------------------------
def _profile_from(args, model_store=None):
    from mmsctl.config import profiles
    return profiles.build_profile(
        args.profile, vcpus=args.vcpus, gpus=args.gpus,
        model_store=os.path.abspath(model_store or args.model_store),
        inference_port=args.inference_port, management_port=args.management_port,
        inference_host="0.0.0.0" if args.public else "127.0.0.1", workers=getattr(args, "workers", None))


def _add_profile_options(parser, store_required=False):
    parser.add_argument("--profile", default="cpu-latency", choices=PROFILES,
                        help="deployment profile (default cpu-latency)")
    parser.add_argument("--vcpus", type=int, help="vCPUs to plan for (default: detected)")
    parser.add_argument("--gpus", type=int, help="GPUs to plan for (default: detected)")
    parser.add_argument("--model-store", required=store_required, default=None if store_required else "model_store",
                        help="folder holding the .mar archives")
    parser.add_argument("--inference-port", type=int, default=8080, help="inference API port (default 8080)")
    parser.add_argument("--management-port", type=int, default=8081,
                        help="management API port, always bound to 127.0.0.1 (default 8081)")
    parser.add_argument("--public", action="store_true",
                        help="bind the inference API to 0.0.0.0 (containers); management stays on 127.0.0.1")


def cmd_config_render(args):
    from mmsctl.config import profiles
    profile = _profile_from(args)
    sys.stdout.write(profiles.render_properties(profile))
    sys.stdout.write("\n# environment of the server process\n")
    sys.stdout.write("\n".join("# " + line for line in profiles.render_environment(profile).splitlines()) + "\n")


def cmd_serve(args):
    from . import server
    profile = _profile_from(args)
    models = dict(args.models or [])
    if args.foreground:
        return server.serve_foreground(profile, args.state_dir, models)
    state = server.start(profile, args.state_dir, models, ready_timeout=args.timeout)
    print("serving %s on %s (management %s, profile %s: %d workers x %d threads); stop with: mmsctl stop%s" % (
        ", ".join(models) or "no model", state.inference_url, state.management_url, profile.name,
        profile.workers, profile.omp_threads,
        "" if args.state_dir == server.default_state_dir() else " --state-dir " + args.state_dir))
    return 0


def cmd_stop(args):
    from . import server
    state = server.ServerState.load(args.state_dir)
    count = server.stop(state)
    print("stopped server pid %d (%d processes)" % (state.pid, count))


def add_server_commands(sub):
    from . import server
    config = sub.add_parser("config", help="render MMS config.properties profiles",
                            epilog=_example("mmsctl config render --profile cpu-throughput --vcpus 4"),
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    config_sub = config.add_subparsers(dest="action", metavar="ACTION", required=True)
    render = config_sub.add_parser("render", help="print config.properties and the environment it implies",
                                   epilog=_example("mmsctl config render --profile cpu-latency --vcpus 2"),
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_profile_options(render)
    render.set_defaults(func=cmd_config_render)

    serve = sub.add_parser(
        "serve", help="start multi-model-server with a profile; returns once models are READY",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=_example("mmsctl serve --profile cpu-latency --model-store model_store \\\n"
                        "    --models efficientnet-lite0=efficientnet-lite0.mar"))
    _add_profile_options(serve, store_required=True)
    serve.add_argument("--models", nargs="+", type=_model_pair, metavar="NAME=FILE.mar", help="models to load")
    serve.add_argument("--workers", type=int, help="override the profile's worker count")
    serve.add_argument("--foreground", action="store_true",
                       help="stay in front and pass SIGTERM/SIGINT on (a container's main process)")
    serve.add_argument("--state-dir", default=server.default_state_dir(),
                       help="folder for the server's config, temp files, logs and pid (default ~/.mmsctl/server)")
    serve.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for READY workers")
    serve.set_defaults(func=cmd_serve)

    stop = sub.add_parser("stop", help="stop the server `mmsctl serve` started",
                          epilog=_example("mmsctl stop"), formatter_class=argparse.RawDescriptionHelpFormatter)
    stop.add_argument("--state-dir", default=server.default_state_dir())
    stop.set_defaults(func=cmd_stop)


# -- management API ----------------------------------------------------------------
def _client(args):
    from .management import ManagementClient
    return ManagementClient(args.management_url)


def cmd_register(args):
    body = _client(args).register(args.url, name=args.name, batch_size=args.batch_size,
                                  max_batch_delay=args.max_batch_delay, workers=args.workers,
                                  response_timeout=args.response_timeout, allow=args.allow_url or ())
    print(body.get("status", json.dumps(body)))


def cmd_scale(args):
    status, body = _client(args).scale(args.name, args.min_worker, args.max_worker, synchronous=not args.no_wait)
    if status == 210:
        print("partial success (HTTP 210): %s" % body.get("status", body))
        return 3
    print(body.get("status", json.dumps(body)))
    return 0


def cmd_describe(args):
    _print_json(_client(args).describe(args.name))


def cmd_list(args):
    _print_json(_client(args).list())


def cmd_unregister(args):
    print(_client(args).unregister(args.name).get("status", "unregistered"))


def cmd_health(args):
    counts = _client(args).health(args.names)
    for name, count in counts.items():
        print("%s: %d READY worker%s" % (name, count, "" if count == 1 else "s"))


def add_management_commands(sub):
    from .management import default_management_url

    def parser(name, help_text, example):
        p = sub.add_parser(name, help=help_text, epilog=_example(example),
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        p.add_argument("--management-url", default=default_management_url(),
                       help="management API (default %(default)s, or $MMSCTL_MANAGEMENT_URL)")
        return p

    reg = parser("register", "register an archive from the model store (or an allowed URL)",
                 "mmsctl register efficientnet-lite0.mar --workers 1")
    reg.add_argument("url", help="archive file name in the model store, or a URL allowed by --allow-url")
    reg.add_argument("--name", help="model name (default: the archive's)")
    reg.add_argument("--batch-size", type=int, help="server-side batch size")
    reg.add_argument("--max-batch-delay", type=int, help="ms to wait to fill a batch")
    reg.add_argument("--workers", type=int, help="initial workers")
    reg.add_argument("--response-timeout", type=int, help="seconds a worker may take per request")
    reg.add_argument("--allow-url", action="append", metavar="PREFIX",
                     help="allow remote archives whose URL starts with PREFIX (repeatable)")
    reg.set_defaults(func=cmd_register)

    scale = parser("scale", "set a model's workers; waits until they run (HTTP 210 = partial)",
                   "mmsctl scale efficientnet-lite0 --min-worker 1")
    scale.add_argument("name")
    scale.add_argument("--min-worker", type=int, required=True)
    scale.add_argument("--max-worker", type=int)
    scale.add_argument("--no-wait", action="store_true", help="return at once (synchronous=false)")
    scale.set_defaults(func=cmd_scale)

    desc = parser("describe", "show a model's settings and workers", "mmsctl describe efficientnet-lite0")
    desc.add_argument("name")
    desc.set_defaults(func=cmd_describe)

    lst = parser("list", "list registered models (all pages)", "mmsctl list")
    lst.set_defaults(func=cmd_list)

    unreg = parser("unregister", "unregister a model", "mmsctl unregister efficientnet-lite0")
    unreg.add_argument("name")
    unreg.set_defaults(func=cmd_unregister)

    health = parser("health", "exit 0 only if the model(s) have READY workers (unlike /ping)",
                    "mmsctl health efficientnet-lite0")
    health.add_argument("names", nargs="*", metavar="NAME", help="models to check (default: all registered)")
    health.set_defaults(func=cmd_health)


# -- predict, quickstart ------------------------------------------------------------
def cmd_predict(args):
    from .client import predict
    _print_json(predict(args.url, args.model, args.files, timeout=args.timeout))


def cmd_quickstart(args):
    from . import quickstart
    return quickstart.run(args.workdir, inference_port=args.inference_port,
                          management_port=args.management_port, image=args.image)


def add_client_commands(sub):
    pred = sub.add_parser("predict", help="classify image files (several go in one multipart request)",
                          epilog=_example("mmsctl predict --model efficientnet-lite0 kitten.jpg"),
                          formatter_class=argparse.RawDescriptionHelpFormatter)
    pred.add_argument("files", nargs="+", metavar="IMAGE")
    pred.add_argument("--model", required=True)
    pred.add_argument("--url", default=os.environ.get("MMSCTL_INFERENCE_URL", "http://127.0.0.1:8080"),
                      help="inference API (default %(default)s, or $MMSCTL_INFERENCE_URL)")
    pred.add_argument("--timeout", type=float, default=120.0)
    pred.set_defaults(func=cmd_predict)

    quick = sub.add_parser(
        "quickstart", help="build the default archive, serve it, scale to 1 worker, classify the bundled cat",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=_example("mmsctl quickstart"))
    quick.add_argument("--workdir", default="quickstart", help="folder for the model store and server state")
    quick.add_argument("--inference-port", type=int, default=8080)
    quick.add_argument("--management-port", type=int, default=8081)
    quick.add_argument("--image", help="image to classify (default: scikit-image's chelsea.png, CC0)")
    quick.set_defaults(func=cmd_quickstart)


COMMAND_GROUPS = [add_archive_commands, add_server_commands, add_management_commands, add_client_commands]


def build_parser():
    parser = argparse.ArgumentParser(
        prog="mmsctl", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=_example("mmsctl archive efficientnet-lite0 --export-path model_store\n"
                        "mmsctl serve --profile cpu-latency --model-store model_store "
                        "--models efficientnet-lite0=efficientnet-lite0.mar\n"
                        "mmsctl scale efficientnet-lite0 --min-worker 1\n"
                        "mmsctl predict --model efficientnet-lite0 kitten.jpg"))
    parser.add_argument("--version", action="version", version="mmsctl " + __version__)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in COMMAND_GROUPS:
        add(sub)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result = args.func(args)
    except (MmsctlError, ArchiveError, ProfileError) as err:
        print("mmsctl: error: %s" % err, file=sys.stderr)
        return getattr(err, "exit_code", 1)
    except KeyboardInterrupt:
        print("mmsctl: interrupted", file=sys.stderr)
        return 130
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
