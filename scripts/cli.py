"""``mmsctl``: one command line over the library, one subcommand per job.

Every subcommand parses options, calls library code and prints; library errors
are typed and become one line on stderr and a non-zero exit here, nowhere else.
"""
import argparse
import json
import os
import sys

from mmsctl.config.profiles import PROFILES

from . import __version__
from .errors import ManagementError, MmsctlError, UsageError
from .metrics import cli as metrics_cli

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
        topk=args.topk, force=args.force, engine=args.engine)
    print(mxnet_checkpoint.build(config, note=_note))


def cmd_archive_efficientnet(args):
    from mmsctl.archives import mxnet_checkpoint
    print(mxnet_checkpoint.build_efficientnet_lite0(args.export_path, name=args.name, force=args.force,
                                                    engine=args.engine, note=_note))


def _note(line):
    """A builder's one-line note (why an --engine auto archive is MXNet-only), on stderr."""
    print("mmsctl: note: " + line, file=sys.stderr)


def cmd_archive_onnx(args):
    from mmsctl.archives import builder, onnx_model
    config = onnx_model.OnnxConfig(
        name=args.name, model=args.model, synset=args.synset, engine=args.engine, export_path=args.export_path,
        input_shape=builder.parse_shape(args.input_shape) if args.input_shape else None, preprocess=args.preprocess,
        resize=args.resize, mean=args.mean, std=args.std, channel_order=args.channel_order,
        interpolation=args.interpolation, topk=args.topk, force=args.force)
    print(onnx_model.build(config))


def cmd_archive_inspect(args):
    from mmsctl.archives import mar
    info = mar.describe(args.archive)
    if args.json:
        _print_json(info)
        return
    print("archive: %s" % info["path"])
    print("model: " + mar.model_line(info["signature"]))
    print("manifest:")
    print("  " + json.dumps(info["manifest"], indent=2, sort_keys=True).replace("\n", "\n  "))
    print("engines (the worker's preference order):")
    for line in mar.engine_lines(info["signature"]):
        print("  " + line)
    print("entries:")
    for entry in info["entries"]:
        print("  %12d  %-8s %s" % (entry["size"], "stored" if entry["stored"] else "deflated", entry["name"]))


def _add_image_options(parser):
    """Preprocessing and top-k options, shared by every image-classifier archive kind."""
    from mmsctl.archives import builder
    parser.add_argument("--preprocess", default="imagenet", choices=list(builder.PREPROCESS_PRESETS),
                        help="pixel normalisation: imagenet mean/std (Gluon zoo), raw 0-255 (classic MMS "
                             "resnet-152), efficientnet (x-127)/128 (default imagenet)")
    parser.add_argument("--resize", type=int, help="shorter side before the centre crop (default H*256/224)")
    parser.add_argument("--mean", type=_floats, help="per-channel mean on 0-255 pixels, e.g. 123.675,116.28,103.53")
    parser.add_argument("--std", type=_floats, help="per-channel std on 0-255 pixels")
    parser.add_argument("--channel-order", choices=["RGB", "BGR"])
    parser.add_argument("--interpolation", default="bilinear", choices=list(builder.INTERPOLATIONS))
    parser.add_argument("--topk", type=int, default=5, help="classes in each answer (default 5)")


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
    _add_image_options(resnet)
    resnet.add_argument("--force", action="store_true", help="overwrite an existing archive")
    resnet.add_argument("--engine", default="auto", choices=["auto", "mxnet", "onnxruntime"],
                        help="auto (default): the checkpoint and its ONNX export (checked to answer alike within "
                             "1e-4), served on onnxruntime, on MXNet where needed (EI, no onnxruntime); MXNet only "
                             "when the export fails. mxnet: the checkpoint only; onnxruntime: the export only")
    resnet.set_defaults(func=cmd_archive_resnet)

    eff = kinds.add_parser(
        "efficientnet-lite0", help="the default archive: EfficientNet-Lite0 with real ImageNet weights (offline)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=_example("mmsctl archive efficientnet-lite0 --export-path model_store"))
    eff.add_argument("--export-path", default=".", help="folder the archive is written to (default: .)")
    eff.add_argument("--name", default="efficientnet-lite0", help="model name (default efficientnet-lite0)")
    eff.add_argument("--force", action="store_true", help="overwrite an existing archive")
    eff.add_argument("--engine", default="auto", choices=["auto", "mxnet", "onnxruntime"],
                     help="auto (default): MXNet checkpoint and ONNX export, the worker picks; or only one of them")
    eff.set_defaults(func=cmd_archive_efficientnet)

    onnx = kinds.add_parser(
        "onnx", help="archive an ONNX model: an image classifier (--synset) or a tensor model (v2 JSON protocol)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=_example("mmsctl archive onnx --name resnet50 --model resnet50.onnx --synset synset.txt "
                        "--export-path model_store\n"
                        "mmsctl archive onnx --name bert --model bert.onnx --export-path model_store\n"
                        "mmsctl archive onnx --name resnet50-mx --model resnet50.onnx --synset synset.txt "
                        "--engine mxnet"))
    onnx.add_argument("--name", required=True, help="model name (MMS pattern ^[A-Za-z0-9][A-Za-z0-9_.-]*$)")
    onnx.add_argument("--model", required=True, help="FILE.onnx (weights inside the file)")
    onnx.add_argument("--synset", help="labels, one per class: makes an image classifier answering top-k "
                                       "classes; without it, a tensor model taking Open Inference Protocol v2 JSON")
    onnx.add_argument("--engine", default="onnxruntime", choices=["onnxruntime", "mxnet"],
                      help="onnxruntime (default: CUDA when MMS gives the worker a GPU, else CPU) or mxnet "
                           "(converted at build time through MXNet's ONNX importer: CPU, GPU, Elastic Inference)")
    onnx.add_argument("--export-path", default=".", help="folder the NAME.mar is written to (default: .)")
    onnx.add_argument("--force", action="store_true", help="overwrite an existing archive")
    image = onnx.add_argument_group("image classifiers (with --synset)")
    image.add_argument("--input-shape", help="N,3,H,W where the model leaves H and W open (default: the model's)")
    _add_image_options(image)
    onnx.set_defaults(func=cmd_archive_onnx)

    inspect = kinds.add_parser("inspect", help="print an archive's manifest, entries and sizes",
                               formatter_class=argparse.RawDescriptionHelpFormatter,
                               epilog=_example("mmsctl archive inspect model_store/efficientnet-lite0.mar"))
    inspect.add_argument("archive", help="FILE.mar")
    inspect.add_argument("--json", action="store_true", help="print JSON (manifest, signature, entries)")
    inspect.set_defaults(func=cmd_archive_inspect)


# -- config, serve, stop --------------------------------------------------------
def _profile_from(args, model_store=None, absolute=True):
    from mmsctl.config import profiles
    store = model_store or args.model_store
    return profiles.build_profile(
        args.profile, vcpus=args.vcpus, gpus=args.gpus,
        model_store=os.path.abspath(store) if absolute else store,
        openmp=getattr(args, "openmp", None), unset_ecs_metadata=getattr(args, "unset_ecs_metadata", False),
        inference_port=args.inference_port, management_port=args.management_port,
        inference_host="0.0.0.0" if args.public else "127.0.0.1", workers=getattr(args, "workers", None),
        management_host=_management_host(args), tls=_tls_from(args))


KEYSTORE_PASS_ENV = "MMSCTL_TLS_KEYSTORE_PASS"


def _management_host(args):
    """--management-host (build_profile logs a warning when it leaves the loopback interface)."""
    return getattr(args, "management_host", None) or "127.0.0.1"


def _tls_from(args):
    """A TlsConfig from --tls-cert/--tls-key or --tls-keystore (password from $MMSCTL_TLS_KEYSTORE_PASS)."""
    from mmsctl.config import profiles
    cert, key, store = (getattr(args, name, None) for name in ("tls_cert", "tls_key", "tls_keystore"))
    if not (cert or key or store):
        return None
    # Absolute: the server runs in its state folder, where relative paths would not resolve.
    cert, key, store = (os.path.abspath(path) if path else None for path in (cert, key, store))
    return profiles.TlsConfig(certificate_file=cert, private_key_file=key,
                              keystore=store, keystore_pass=os.environ.get(KEYSTORE_PASS_ENV),
                              keystore_type=getattr(args, "tls_keystore_type", None) or "PKCS12")


def _add_profile_options(parser, store_required=False):
    parser.add_argument("--profile", default="cpu-latency", choices=PROFILES,
                        help="deployment profile (default cpu-latency)")
    parser.add_argument("--vcpus", type=int, help="vCPUs to plan for (default: detected)")
    parser.add_argument("--gpus", type=int, help="GPUs to plan for (default: detected)")
    parser.add_argument("--openmp", choices=["gnu", "intel"],
                        help="OpenMP runtime of the server's MXNet (default: detected; KMP_* settings only for intel)")
    parser.add_argument("--unset-ecs-metadata", action="store_true",
                        help="ei profile inside an ECS task: run the server without ECS_CONTAINER_METADATA_URI and "
                             "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI, so the EI client finds its accelerator")
    parser.add_argument("--model-store", required=store_required, default=None if store_required else "model_store",
                        help="folder holding the .mar archives")
    parser.add_argument("--inference-port", type=int, default=8080, help="inference API port (default 8080)")
    parser.add_argument("--management-port", type=int, default=8081,
                        help="management API port, bound to --management-host (default 8081)")
    parser.add_argument("--public", action="store_true",
                        help="bind the inference API (and serve's metrics exporter) to 0.0.0.0 (containers); "
                             "management stays on 127.0.0.1")
    parser.add_argument("--management-host", default="127.0.0.1",
                        help="address the management API binds to (default 127.0.0.1); anything else prints a "
                             "warning: the management API has no authentication and registers code")
    parser.add_argument("--tls-cert", metavar="PEM", help="serve the inference API over https with this certificate")
    parser.add_argument("--tls-key", metavar="PEM", help="the PEM (RSA) private key of --tls-cert")
    parser.add_argument("--tls-keystore", metavar="FILE",
                        help="https from a keystore instead (password from $%s)" % KEYSTORE_PASS_ENV)
    parser.add_argument("--tls-keystore-type", default="PKCS12", choices=["PKCS12", "JKS"],
                        help="type of --tls-keystore (default PKCS12)")


def _model_specs(args, model_store=None):
    """The models of --models-file and --models (checked, archives included when ``model_store``)."""
    from . import models_file
    groups = []
    if getattr(args, "models_file", None):
        groups.append((args.models_file, models_file.load(args.models_file)))
    if args.models:
        groups.append(("--models", models_file.from_pairs(args.models)))
    specs = models_file.combine(*groups)
    if model_store is not None:
        for source, group in groups:
            models_file.check_archives(group, model_store, source)
    return specs


def _planned_profile(args, specs, absolute=True):
    """The profile with its plan over every model; a plan over the vCPUs is refused unless --oversubscribe."""
    from mmsctl.config import profiles
    profile = _profile_from(args, absolute=absolute)
    profile, warning = profiles.plan_models(profile, [spec.request() for spec in specs],
                                            oversubscribe=getattr(args, "oversubscribe", False),
                                            default_workers=getattr(args, "workers", None))
    if warning:
        print("mmsctl: " + warning, file=sys.stderr)
    return profile


def cmd_config_render(args):
    from mmsctl.config import profiles
    sys.stdout.write(profiles.render_config(_planned_profile(args, _model_specs(args), absolute=False)))


def cmd_serve(args):
    from . import server
    specs = _model_specs(args, model_store=args.model_store)
    profile = _planned_profile(args, specs)
    models = [spec.name for spec in specs]
    metrics = metrics_cli.plan(args)  # where the exporter will listen (None: --metrics-port 0)

    def ready(state, stop_hint=True, metrics_url=None):
        if len(profile.plan) > 1:
            plan = "%d models on %d vCPUs" % (len(profile.plan), profile.vcpus)
        else:
            workers, threads = ((profile.plan[0].workers, profile.plan[0].threads) if profile.plan
                                else (profile.workers, profile.omp_threads))
            plan = "%d worker%s x %d thread%s" % (workers, "" if workers == 1 else "s", threads,
                                                 "" if threads == 1 else "s")
        print("serving %s on %s (management %s, profile %s: %s)%s%s" % (
            ", ".join(models) or "no model", state.inference_url, state.management_url, profile.name, plan,
            "; metrics, /healthz, /readyz on %s" % metrics_url if metrics_url else "",
            ("; stop with: mmsctl stop" + ("" if args.state_dir == server.default_state_dir()
                                            else " --state-dir " + args.state_dir)) if stop_hint else ""),
            flush=True)
        keys = ("batch_size", "max_batch_delay_ms", "response_timeout_s", "engine")
        if len(profile.plan) > 1 or any(key in state.settings.get(p.name, {}) for p in profile.plan for key in keys):
            for plan in profile.plan:
                settings = state.settings.get(plan.name, {})
                extra = ", ".join("%s %s" % (key, settings[key]) for key in keys if key in settings)
                print("  model %s%s" % (plan.describe(), " (%s)" % extra if extra else ""), flush=True)
            total = sum(p.workers * p.threads for p in profile.plan)
            print("  total: %d workers x threads on %d vCPUs" % (total, profile.vcpus), flush=True)

    if args.foreground:
        from . import drain
        state_dir = os.path.abspath(args.state_dir)
        drain.clear_draining(state_dir)  # a stale flag would fail readiness
        exporters = []

        def on_ready(state):
            exporter = metrics_cli.start_in_process(metrics, state, emf=args.emf)
            exporters.extend([exporter] if exporter else [])
            ready(state, stop_hint=False, metrics_url=exporters[0].url if exporters else None)

        def requests_done():  # mark draining (/readyz: 503), wait for the requests in flight (mmsctl.drain)
            drain.drain(state_dir, args.inference_port, args.drain_timeout,
                        log=lambda line: print(line, file=sys.stderr, flush=True))
        try:
            return server.serve_foreground(profile, args.state_dir, specs, ready_timeout=args.timeout,
                                           on_ready=on_ready, drain=requests_done if args.drain_timeout > 0 else None)
        finally:
            for exporter in exporters:
                exporter.stop()
    state = server.start(profile, args.state_dir, specs, ready_timeout=args.timeout)
    ready(state, metrics_url=metrics_cli.start_child(metrics, state, emf=args.emf))
    return 0


def cmd_stop(args):
    from . import server
    state = server.ServerState.load(args.state_dir)
    metrics_cli.stop(args.state_dir)
    count = server.stop(state)
    print("stopped server pid %d (%d processes)" % (state.pid, count))


def _add_models_options(parser):
    parser.add_argument("--models", nargs="+", type=_model_pair, metavar="NAME=FILE.mar", help="models to load")
    parser.add_argument("--models-file", metavar="FILE.toml",
                        help="models with their settings, one TOML table each: archive, workers or share, "
                             "batch_size, max_batch_delay_ms, response_timeout_s, engine")
    parser.add_argument("--oversubscribe", action="store_true",
                        help="serve a plan whose workers x threads over all models exceed the vCPUs (a warning "
                             "instead of a refusal)")


def add_server_commands(sub):
    from . import drain, server
    config = sub.add_parser("config", help="render MMS config.properties profiles",
                            epilog=_example("mmsctl config render --profile cpu-throughput --vcpus 4"),
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    config_sub = config.add_subparsers(dest="action", metavar="ACTION", required=True)
    render = config_sub.add_parser("render", help="print config.properties and the environment it implies",
                                   epilog=_example("mmsctl config render --profile cpu-latency --vcpus 2"),
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_profile_options(render)
    render.add_argument("--workers", type=int, help="override the profile's worker count")
    _add_models_options(render)
    render.set_defaults(func=cmd_config_render)

    serve = sub.add_parser(
        "serve", help="start multi-model-server with a profile; returns once models are READY",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=_example("mmsctl serve --profile cpu-latency --model-store model_store \\\n"
                        "    --models efficientnet-lite0=efficientnet-lite0.mar\n"
                        "mmsctl serve --profile cpu-latency --model-store model_store --models-file models.toml"))
    _add_profile_options(serve, store_required=True)
    serve.add_argument("--workers", type=int, help="override the profile's worker count")
    _add_models_options(serve)
    serve.add_argument("--foreground", action="store_true",
                       help="stay in front and pass SIGTERM/SIGINT on (a container's main process)")
    serve.add_argument("--state-dir", default=server.default_state_dir(),
                       help="folder for the server's config, temp files, logs and pid (default ~/.mmsctl/server)")
    serve.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for READY workers")
    serve.add_argument("--drain-timeout", type=float, default=drain.DEFAULT_DRAIN_TIMEOUT, metavar="S",
                       help="--foreground: on SIGTERM, fail readiness and let requests in flight finish for up to S "
                            "seconds before stopping MMS (default 20; keep it under the container's stop timeout)")
    metrics_cli.add_serve_options(serve)
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
    from . import loading
    client = _client(args)
    if args.name:  # a model of that name, perhaps still being registered: say which, send nothing
        try:
            described = client.describe(args.name, what="register %s" % args.name)
        except MmsctlError as err:
            if getattr(err, "status", None) != 404:
                raise
        else:
            status = loading.load_status(client, args.name, described=described)
            raise UsageError("register %s: a model of that name is already registered at %s%s: unregister it "
                             "first, or choose another --name" % (
                                 args.name, client.base_url,
                                 " and still loading (%d of %d workers have loaded it)" % (
                                     status["loadedWorkers"], status["workerCount"])
                                 if status["allWorkersLoaded"] is False else ""))
    body = client.register(args.url, name=args.name, batch_size=args.batch_size,
                           max_batch_delay=args.max_batch_delay, workers=args.workers,
                           response_timeout=args.response_timeout, allow=args.allow_url or ())
    print(body.get("status", json.dumps(body)))


def cmd_scale(args):
    from . import loading
    client = _client(args)
    what = "scale model %s" % args.name
    before = loading.wait_until_loaded(client, args.name, args.timeout, what)
    if before is None:  # not registered: MMS says so
        before = client.describe(args.name, what=what)
    try:
        status, body = client.scale(args.name, args.min_worker, args.max_worker, synchronous=not args.no_wait,
                                    timeout=args.timeout)
    except ManagementError as err:
        if err.status is None or err.status < 500:  # refused before anything changed, or no answer
            raise
        # MMS keeps the new worker count and retries the failed workers forever: go back
        client.scale(args.name, before["minWorkers"], before["maxWorkers"], synchronous=True, timeout=args.timeout)
        raise ManagementError("%s; the model keeps its previous %d worker%s" % (
            err, before["minWorkers"], "" if before["minWorkers"] == 1 else "s"), status=err.status) from err
    if status == 210:  # MMS's READY counts a worker still retrying its load, so no count is given
        print("scale model %s: %s answered 210 (partial success): fewer than %d workers have loaded the model; "
              "the reason is in the server's logs/mms_log.log" % (args.name, client.base_url, args.min_worker))
        return 3
    print(body.get("status", json.dumps(body)))
    return 0


def _server_settings(args, client):
    """{model: settings} from the state of the `mmsctl serve` behind this management URL, if it is ours."""
    from . import server
    try:
        state = server.ServerState.load(args.state_dir)
    except (MmsctlError, OSError, TypeError, ValueError):
        return {}
    return state.settings if state.management_url.rstrip("/") == client.base_url else {}


def _with_status(client, described, settings):
    """MMS's description of a model plus mmsctl's: workers that really loaded it, settings served with."""
    from . import loading
    described = dict(described)
    described.update(loading.load_status(client, described["modelName"], described=described))
    own = settings.get(described["modelName"], {})
    for key, value in (("responseTimeoutSeconds", own.get("response_timeout_s")), ("threads", own.get("threads")),
                       ("enginePreference", own.get("engine")), ("archive", own.get("archive"))):
        if value is not None:
            described[key] = value
    return described


def cmd_describe(args):
    client = _client(args)
    _print_json(_with_status(client, client.describe(args.name), _server_settings(args, client)))


def cmd_list(args):
    client = _client(args)
    settings = _server_settings(args, client)
    listed = []
    for model in client.list(limit=args.limit):
        described = _with_status(client, client.describe(model["modelName"]), settings)
        listed.append({key: described[key] for key in (
            "modelName", "modelUrl", "batchSize", "maxBatchDelay", "minWorkers", "maxWorkers", "workerCount",
            "loadedWorkers", "allWorkersLoaded", "responseTimeoutSeconds", "threads", "enginePreference")
            if key in described})
    _print_json(listed)


def cmd_unregister(args):
    from . import loading
    client = _client(args)
    if not args.force:
        loading.wait_until_loaded(client, args.name, args.timeout, "unregister model %s" % args.name,
                                  hint="; or pass --force to unregister it while it loads")
    print(client.unregister(args.name).get("status", "unregistered"))


def cmd_health(args):
    counts = _client(args).health(args.names)
    for name, count in counts.items():
        print("%s: %d READY worker%s" % (name, count, "" if count == 1 else "s"))


def _state_option(parser):
    from . import server
    parser.add_argument("--state-dir", default=server.default_state_dir(),
                        help="state folder of the `mmsctl serve` behind the URL, for the settings it served "
                             "with (default %(default)s)")


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

    scale = parser("scale", "set a model's workers; waits until they have loaded it (exit 3: HTTP 210, partial)",
                   "mmsctl scale efficientnet-lite0 --min-worker 1")
    scale.add_argument("name")
    scale.add_argument("--min-worker", type=int, required=True)
    scale.add_argument("--max-worker", type=int)
    scale.add_argument("--no-wait", action="store_true", help="return at once (synchronous=false)")
    scale.add_argument("--timeout", type=float, default=300.0,
                       help="seconds to wait for a registration in progress, then for the workers (default 300)")
    scale.set_defaults(func=cmd_scale)

    desc = parser("describe", "show a model's settings, workers, and how many have really loaded it",
                  "mmsctl describe efficientnet-lite0")
    desc.add_argument("name")
    _state_option(desc)
    desc.set_defaults(func=cmd_describe)

    lst = parser("list", "list registered models with their settings and loaded workers (all pages)", "mmsctl list")
    lst.add_argument("--limit", type=int, default=100, help="models per page asked of MMS (default 100)")
    _state_option(lst)
    lst.set_defaults(func=cmd_list)

    unreg = parser("unregister", "unregister a model (after a registration in progress has finished)",
                   "mmsctl unregister efficientnet-lite0")
    unreg.add_argument("name")
    unreg.add_argument("--timeout", type=float, default=300.0,
                       help="seconds to wait for a registration in progress (default 300)")
    unreg.add_argument("--force", action="store_true",
                       help="do not wait: unregister a model whose workers are still loading it or keep failing to")
    unreg.set_defaults(func=cmd_unregister)

    health = parser("health", "exit 0 only if the model(s) have READY workers (unlike /ping); MMS's READY is "
                    "a running worker, which may still be loading", "mmsctl health efficientnet-lite0")
    health.add_argument("names", nargs="*", metavar="NAME", help="models to check (default: all registered)")
    health.set_defaults(func=cmd_health)


# -- predict, quickstart ------------------------------------------------------------
def cmd_predict(args):
    from .client import predict
    _print_json(predict(args.url, args.model, args.files, timeout=args.timeout, verify=args.cacert or True))


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
    pred.add_argument("--cacert", metavar="PEM", help="certificate (or CA bundle) to trust for an https --url")
    pred.set_defaults(func=cmd_predict)

    quick = sub.add_parser(
        "quickstart", help="build the default archive, serve it, scale to 1 worker, classify the bundled cat",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=_example("mmsctl quickstart"))
    quick.add_argument("--workdir", help="folder for the model store and server state (default: quickstart/ "
                                          "under $MMSCTL_CACHE_DIR, $XDG_CACHE_HOME/mmsctl or ~/.cache/mmsctl)")
    quick.add_argument("--inference-port", type=int, default=8080)
    quick.add_argument("--management-port", type=int, default=8081)
    quick.add_argument("--image", help="image to classify (default: scikit-image's chelsea.png, CC0)")
    quick.set_defaults(func=cmd_quickstart)


# -- bench ---------------------------------------------------------------------------------
def add_bench_commands(sub):
    """``mmsctl bench`` (a server, the in-process limit, or both) and ``bench sweep`` / ``bench random-resnet``."""
    from . import bench

    def common(parser):
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
        if not args.out:
            raise UsageError("--out DIR is required: the folder for report.json, report.md and report.png")
        load = bench.LoadConfig(concurrency=tuple(bench.parse_levels(args.concurrency)),
                                requests=args.requests if args.requests or args.duration else 50,
                                duration=args.duration, warmup=args.warmup, timeout=args.timeout).validate()
        price = bench.resolve_price(bench.load_prices(), args.instance, args.accelerator, args.price_per_hour)
        if args.input is None:
            from .quickstart import bundled_image
            args.input = bundled_image()
        return load, price, bench.TerminalProgress(sys.stderr)

    def written(report, args, progress):
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
            from .limit import add_limit
            add_limit(report, archive, load, message=progress.message,
                      log_dir=os.path.join(os.path.abspath(args.out), "inprocess-logs", "limit"))
        if args.url and args.management_url and args.model_store:
            from .reference import add_floor
            add_floor(report, args.profile or "server", args.management_url, args.url, args.model_store,
                      requests=load.requests or 20, warmup=min(load.warmup, 5))
        elif args.url:
            report["notes"].append("MMS floor not measured: give --management-url URL and --model-store DIR of "
                                   "the server to register a no-op handler on it")
        return written(bench.finish_report(report), args, progress)

    def cmd_sweep(args):
        from . import sweep
        load, price, progress = prepared(args)
        config = sweep.SweepConfig(
            archive=args.archive, input=args.input, out=args.out, load=load,
            profiles=tuple(p for p in args.profiles.split(",") if p),
            batch_sizes=tuple(bench.parse_levels(args.batch_sizes)), max_batch_delay=args.max_batch_delay,
            vcpus=args.vcpus, inprocess=not args.no_inprocess, keep_server_files=args.keep_server_files,
            unpacked=args.unpacked)
        return written(sweep.run(config, price, progress=progress, message=progress.message), args, progress)

    def cmd_random_resnet(args):
        from . import sweep
        print(sweep.build_random_resnet(args.export_path, layers=args.layers, name=args.name, seed=args.seed,
                                        force=args.force))

    parser = sub.add_parser(
        "bench", help="latency, throughput and cost per 100k requests of a server or of the in-process limit",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=_example("mmsctl bench --url http://127.0.0.1:8080 --model efficientnet-lite0 --input kitten.jpg \\\n"
                        "    --concurrency 1,2 --requests 100 --instance m5.large --out bench-out\n"
                        "mmsctl bench --inprocess model_store/efficientnet-lite0.mar --input kitten.jpg --out inproc\n"
                        "mmsctl bench sweep --archive model_store/resnet-152.mar --profiles cpu-latency,cpu-throughput "
                        "--instance m5.large --out sweep"))
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
    common(parser)
    parser.set_defaults(func=cmd_bench)
    kinds = parser.add_subparsers(dest="bench_action", metavar="ACTION")

    sweep_parser = kinds.add_parser(
        "sweep", help="one server per profile and batch size, the same load, one combined table and plot",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=_example("mmsctl bench sweep --archive model_store/resnet-152.mar --profiles cpu-latency,cpu-throughput "
                        "\\\n    --batch-sizes 1,4 --concurrency 1,2,4 --duration 20 --instance m5.large --out sweep"))
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
    common(sweep_parser)
    sweep_parser.set_defaults(func=cmd_sweep)

    resnet = kinds.add_parser(
        "random-resnet", help="archive a Gluon model-zoo ResNet v1 with random weights (a big model to bench)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=_example("mmsctl bench random-resnet --layers 152 --export-path model_store"))
    resnet.add_argument("--layers", type=int, default=152, help="18, 34, 50, 101 or 152 (default 152)")
    resnet.add_argument("--name", help="model name (default resnet-LAYERS)")
    resnet.add_argument("--seed", type=int, default=0)
    resnet.add_argument("--export-path", default=".", help="folder the archive is written to")
    resnet.add_argument("--force", action="store_true", help="overwrite an existing archive")
    resnet.set_defaults(func=cmd_random_resnet)


COMMAND_GROUPS = [add_archive_commands, add_server_commands, add_management_commands, add_client_commands]
COMMAND_GROUPS.append(add_bench_commands)


# -- ecs -----------------------------------------------------------------------------------
def add_ecs_commands(sub):
    """``mmsctl ecs task-definition | neuron-task-definition | service | iam-policy``: print ECS requests (JSON)."""
    from mmsctl.config.profiles import OPENMP_RUNTIMES
    from mmsctl.docker import ecs

    from . import autoscaling

    def _list(text):
        return [item for item in text.split(",") if item]

    def roles(parser):
        parser.add_argument("--execution-role-arn", help="role the ECS agent uses to pull the image and write logs "
                                                         "(e.g. arn:aws:iam::ACCOUNT:role/ecsTaskExecutionRole)")
        parser.add_argument("--task-role-arn", help="role of the containers; for EI it needs elastic-inference:Connect "
                                                    "(mmsctl ecs iam-policy ei-connect)")

    def cmd_task_definition(args):
        from . import models_file
        file_models = tuple(models_file.load(args.models_file)) if args.models_file else ()
        _print_json(ecs.task_definition(ecs.TaskOptions(
            profile=args.profile, image=args.image, models=tuple(args.models or ()), family=args.family,
            models_file=os.path.basename(args.models_file) if args.models_file else None,
            file_models=file_models,
            accelerator=args.accelerator, ei_attachment=args.ei_attachment, network_mode=args.network_mode,
            side_by_side=args.side_by_side, cpu=args.cpu, memory=args.memory, vcpus=args.vcpus, gpus=args.gpus,
            openmp=args.openmp, host_port=args.host_port, execution_role_arn=args.execution_role_arn,
            task_role_arn=args.task_role_arn, host_model_store=args.host_model_store, log_group=args.log_group,
            region=args.region, metrics_port=args.metrics_port, drain_timeout=args.drain_timeout, emf=args.emf)))

    def cmd_neuron(args):
        _print_json(ecs.neuron_task_definition(ecs.NeuronOptions(
            image=args.image, models=tuple(args.models), vcpus=args.vcpus, devices=args.neuron_devices,
            neuron_rtd_image=args.neuron_rtd_image, family=args.family, memory=args.memory,
            execution_role_arn=args.execution_role_arn, task_role_arn=args.task_role_arn)))

    def cmd_service(args):
        task = ecs.load_task_definition(args.task_definition_file)
        _print_json(ecs.service(task, args.cluster, args.service_name or task["family"],
                                desired_count=args.desired_count, revision=args.revision, subnets=args.subnets,
                                security_groups=args.security_groups, target_group_arn=args.target_group_arn,
                                assign_public_ip=args.assign_public_ip))

    def cmd_iam(args):
        _print_json(ecs.iam_document(args.kind))

    def parser(name, help_text, example, parent):
        return parent.add_parser(name, help=help_text, epilog=_example(example),
                                 formatter_class=argparse.RawDescriptionHelpFormatter)

    group = parser("ecs", "print Amazon ECS requests (task definitions, services, IAM policies) as JSON",
                   "mmsctl ecs task-definition --profile cpu-latency --image mmsctl:cpu --cpu 2048 \\\n"
                   "    --models efficientnet-lite0=efficientnet-lite0.mar > taskdef.json\n"
                   "aws ecs register-task-definition --cli-input-json file://taskdef.json", sub)
    actions = group.add_subparsers(dest="ecs_action", metavar="ACTION", required=True)

    task = parser("task-definition", "a RegisterTaskDefinition request for an mmsctl image",
                  "mmsctl ecs task-definition --profile ei --accelerator eia2.medium --side-by-side \\\n"
                  "    --image ACCOUNT.dkr.ecr.us-east-1.amazonaws.com/mmsctl:ei --cpu 2048 --memory 4096 \\\n"
                  "    --models resnet-152=resnet-152.mar --task-role-arn arn:aws:iam::ACCOUNT:role/ecs-ei-task-role",
                  actions)
    task.add_argument("--profile", required=True, choices=PROFILES, help="the server's deployment profile")
    task.add_argument("--image", required=True, help="image built from docker/Dockerfile.cpu|gpu|ei")
    task.add_argument("--models", nargs="+", type=_model_pair, metavar="NAME=FILE.mar",
                      help="archives in the container's model store (/models) to load")
    task.add_argument("--models-file", metavar="FILE.toml",
                      help="a models file, read here (checked and planned) and read by the server as "
                           "/models/FILE.toml: put it next to the archives, baked into the image or in "
                           "--host-model-store")
    task.add_argument("--accelerator", help="Elastic Inference accelerator of the task (profile ei): %s"
                      % ", ".join(ecs.EI_ACCELERATORS))
    task.add_argument("--ei-attachment", default="task", choices=ecs.EI_ATTACHMENTS,
                      help="task: --accelerator on the task (default); instance: the EI of the container instance "
                           "(the server then runs without the ECS metadata variables)")
    task.add_argument("--network-mode", default="bridge", choices=ecs.NETWORK_MODES, help="default bridge")
    task.add_argument("--side-by-side", action="store_true",
                      help="add a plain cpu-latency server on port %d next to the accelerated one (seed 000)"
                           % (ecs.INFERENCE_PORT + ecs.SIDE_PORT_OFFSET))
    task.add_argument("--cpu", type=int, help="task CPU units (1024 = one vCPU), split between the servers")
    task.add_argument("--memory", type=int, default=ecs.DEFAULT_MEMORY_MIB, help="task memory in MiB (default 2048)")
    task.add_argument("--vcpus", type=int, help="vCPUs each server plans threads for (default: --cpu / 1024)")
    task.add_argument("--gpus", type=int, default=1, help="GPUs of the gpu profile's container (default 1)")
    task.add_argument("--openmp", default="gnu", choices=OPENMP_RUNTIMES,
                      help="OpenMP runtime of the image's MXNet (default gnu: the pip wheels)")
    task.add_argument("--host-port", type=int, default=ecs.INFERENCE_PORT,
                      help="bridge mode: instance port of the inference API (default 8080; 0 = dynamic)")
    task.add_argument("--family", help="task definition family (default mmsctl-PROFILE)")
    task.add_argument("--host-model-store", metavar="PATH",
                      help="folder on the container instance mounted read-only at /models (default: the "
                           "archives are in the image)")
    task.add_argument("--log-group", help="CloudWatch Logs group for the awslogs driver")
    task.add_argument("--region", help="region of --log-group (default us-east-1)")
    task.add_argument("--metrics-port", type=int, help="serve /healthz and /readyz on this port (awsvpc tasks behind "
                                                       "a load balancer: 8082)")
    task.add_argument("--emf", action="store_true",
                      help="the server writes CloudWatch Embedded Metric Format lines (per model per minute) for "
                           "the awslogs driver (needs --log-group)")
    task.add_argument("--drain-timeout", type=int, default=ecs.DRAIN_TIMEOUT,
                      help="seconds requests in flight get after SIGTERM (default %d; stopTimeout = this + %d)"
                           % (ecs.DRAIN_TIMEOUT, ecs.STOP_MARGIN))
    roles(task)
    task.set_defaults(func=cmd_task_definition)

    neuron = parser("neuron-task-definition", "an Inf1 (AWS Inferentia) task definition: /dev/neuron* devices",
                    "mmsctl ecs neuron-task-definition --image ACCOUNT.dkr.ecr.us-east-1.amazonaws.com/mmsctl:inf1 \\\n"
                    "    --vcpus 4 --models resnet-50=resnet-50-neuron.mar", actions)
    neuron.add_argument("--image", required=True, help="an mmsctl image with MXNet for Neuron")
    neuron.add_argument("--models", required=True, nargs="+", type=_model_pair, metavar="NAME=FILE.mar")
    neuron.add_argument("--vcpus", type=int, required=True, help="vCPUs of the instance type (inf1.xlarge: 4)")
    neuron.add_argument("--neuron-devices", type=int, default=1, help="Inferentia chips to map (default 1)")
    neuron.add_argument("--neuron-rtd-image", help="Neuron 1.x: run this neuron-rtd sidecar and share its socket "
                                                   "(seed 001); default: Neuron 2.x, devices in the server")
    neuron.add_argument("--family", default="mmsctl-inf1")
    neuron.add_argument("--memory", type=int, default=ecs.DEFAULT_MEMORY_MIB, help="task memory in MiB")
    roles(neuron)
    neuron.set_defaults(func=cmd_neuron)

    service = parser("service", "a CreateService request that keeps N copies of a task running",
                     "mmsctl ecs service --task-definition-file taskdef.json --cluster mmsctl --desired-count 2 "
                     "> service.json\naws ecs create-service --cli-input-json file://service.json", actions)
    service.add_argument("--task-definition-file", required=True, metavar="FILE",
                         help="the JSON `mmsctl ecs task-definition` printed")
    service.add_argument("--cluster", required=True)
    service.add_argument("--service-name", help="default: the task definition's family")
    service.add_argument("--desired-count", type=int, default=1, help="copies to keep running (default 1)")
    service.add_argument("--revision", type=int, help="task definition revision (default: the latest ACTIVE)")
    service.add_argument("--subnets", type=_list, default=[], help="awsvpc tasks: subnet ids, comma-separated")
    service.add_argument("--security-groups", type=_list, default=[], help="awsvpc tasks: security group ids")
    service.add_argument("--assign-public-ip", action="store_true", help="awsvpc tasks: give each a public IP")
    service.add_argument("--target-group-arn", help="register the first container's inference port with this "
                                                    "load balancer target group")
    service.set_defaults(func=cmd_service)

    iam = parser("iam-policy", "IAM documents: the EI permission and the roles' trust policies",
                 "mmsctl ecs iam-policy ei-connect > ei-connect.json\n"
                 "aws iam put-role-policy --role-name ecs-ei-task-role --policy-name ei-connect "
                 "--policy-document file://ei-connect.json", actions)
    iam.add_argument("kind", choices=sorted(ecs.IAM_DOCUMENTS),
                     help="ei-connect (elastic-inference:Connect), task-trust (ecs-tasks.amazonaws.com), "
                          "instance-trust (ec2.amazonaws.com)")
    iam.set_defaults(func=cmd_iam)
    autoscaling.add_command(actions)


COMMAND_GROUPS.append(add_ecs_commands)


# -- soak ----------------------------------------------------------------------------------------
def cmd_soak(args):
    from . import server, soak
    from .management import ManagementClient
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


def add_soak_commands(sub):
    from . import server, soak
    cmd = sub.add_parser(
        "soak", help="full-concurrency load for a long time: errors, latency and worker memory per interval",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=_example("mmsctl serve --profile cpu-latency --model-store model_store "
                        "--models efficientnet-lite0=efficientnet-lite0.mar\n"
                        "mmsctl soak --model efficientnet-lite0 --input kitten.jpg --duration 600 --out soak.json"))
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


COMMAND_GROUPS.append(add_soak_commands)
COMMAND_GROUPS.append(metrics_cli.add_top_command)


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
    except MmsctlError as err:
        print("mmsctl: error: %s" % err, file=sys.stderr)
        return getattr(err, "exit_code", 1)
    except KeyboardInterrupt:
        print("mmsctl: interrupted", file=sys.stderr)
        return 130
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
