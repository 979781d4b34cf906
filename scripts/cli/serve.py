"""``mmsctl config render``, ``serve`` and ``stop``: profiles, the models to load, the server's life."""
import os
import sys

from mmsctl.config import profiles
from mmsctl.config.profiles import PROFILES

from .. import drain, models_file, server, supervisor
from ..metrics import cli as metrics_cli
from .common import command, model_pair


def _profile_from(args, model_store=None, absolute=True):
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
    profile = _profile_from(args, absolute=absolute)
    profile, warning = profiles.plan_models(profile, [spec.request() for spec in specs],
                                            oversubscribe=getattr(args, "oversubscribe", False),
                                            default_workers=getattr(args, "workers", None))
    if warning:
        print("mmsctl: " + warning, file=sys.stderr)
    return profile


def cmd_config_render(args):
    sys.stdout.write(profiles.render_config(_planned_profile(args, _model_specs(args), absolute=False)))


def cmd_serve(args):
    specs = _model_specs(args, model_store=args.model_store)
    profile = _planned_profile(args, specs)
    models = [spec.name for spec in specs]
    runner, extra = server, {}
    if args.server == "torchserve":  # TorchServe 0.12: mmsctl.torchserve renders its config and launches it
        from .. import torchserve
        runner, extra = torchserve, {"metrics_port": args.torchserve_metrics_port}
    # where the exporter will listen (None: --metrics-port 0; TorchServe: its own metrics API instead)
    metrics = metrics_cli.plan(args) if args.server == "mms" else None

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
        state_dir = os.path.abspath(args.state_dir)
        drain.clear_draining(state_dir)  # a stale flag would fail readiness
        exporters, supervisors = [], []

        def on_launched(state):  # /healthz and /readyz answer (503) while the models load
            exporter = metrics_cli.start_in_process(metrics, state, emf=args.emf)
            exporters.extend([exporter] if exporter else [])

        def on_ready(state):
            if args.server == "mms" and not args.no_supervisor:
                supervisor.clear(state_dir)
                supervisors.append(supervisor.Supervisor(state, grace=args.heal_after, max_failures=args.heal_give_up,
                                                         heal_by=args.heal_by).start())
            ready(state, stop_hint=False, metrics_url=exporters[0].url if exporters else None)

        if args.server == "mms":
            extra["on_launched"] = on_launched

        def requests_done():  # mark draining (/readyz: 503), wait for the requests in flight (mmsctl.drain)
            drain.drain(state_dir, args.inference_port, args.drain_timeout,
                        log=lambda line: print(line, file=sys.stderr, flush=True))
        try:
            return runner.serve_foreground(profile, args.state_dir, specs, ready_timeout=args.timeout,
                                           on_ready=on_ready, drain=requests_done if args.drain_timeout > 0 else None,
                                           **extra)
        finally:
            for watcher in supervisors + exporters:
                watcher.stop()
    state = runner.start(profile, args.state_dir, specs, ready_timeout=args.timeout, **extra)
    if args.server == "mms" and not args.no_supervisor:
        supervisor.clear(state.state_dir)
        supervisor.start_child(state.state_dir, supervisor.options_of(args))
    ready(state, metrics_url=metrics_cli.start_child(metrics, state, emf=args.emf))
    return 0


def cmd_stop(args):
    state = server.ServerState.load(args.state_dir)
    metrics_cli.stop(args.state_dir)
    supervisor.stop_child(args.state_dir)
    count = server.stop(state)
    print("stopped server pid %d (%d processes)" % (state.pid, count))


def _add_models_options(parser):
    parser.add_argument("--models", nargs="+", type=model_pair, metavar="NAME=FILE.mar", help="models to load")
    parser.add_argument("--models-file", metavar="FILE.toml",
                        help="models with their settings, one TOML table each: archive, workers or share, "
                             "batch_size, max_batch_delay_ms, response_timeout_s, engine")
    parser.add_argument("--oversubscribe", action="store_true",
                        help="serve a plan whose workers x threads over all models exceed the vCPUs (a warning "
                             "instead of a refusal)")


def add_commands(sub):
    config = command(sub, "config", "render MMS config.properties profiles",
                     "mmsctl config render --profile cpu-throughput --vcpus 4")
    config_sub = config.add_subparsers(dest="action", metavar="ACTION", required=True)
    render = command(config_sub, "render", "print config.properties and the environment it implies",
                     "mmsctl config render --profile cpu-latency --vcpus 2")
    _add_profile_options(render)
    render.add_argument("--workers", type=int, help="override the profile's worker count")
    _add_models_options(render)
    render.set_defaults(func=cmd_config_render)

    serve = command(sub, "serve", "start multi-model-server with a profile; returns once every worker has loaded its model",
                    "mmsctl serve --profile cpu-latency --model-store model_store \\\n"
                     "    --models efficientnet-lite0=efficientnet-lite0.mar\n"
                     "mmsctl serve --profile cpu-latency --model-store model_store --models-file models.toml")
    _add_profile_options(serve, store_required=True)
    serve.add_argument("--workers", type=int, help="override the profile's worker count")
    _add_models_options(serve)
    serve.add_argument("--foreground", action="store_true",
                       help="stay in front and pass SIGTERM/SIGINT on (a container's main process)")
    serve.add_argument("--state-dir", default=server.default_state_dir(),
                       help="folder for the server's config, temp files, logs and pid (default ~/.mmsctl/server)")
    serve.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for every worker to load its model (default 300)")
    serve.add_argument("--drain-timeout", type=float, default=drain.DEFAULT_DRAIN_TIMEOUT, metavar="S",
                       help="--foreground: on SIGTERM, fail readiness and let requests in flight finish for up to S "
                            "seconds before stopping MMS (default 20; keep it under the container's stop timeout)")
    metrics_cli.add_serve_options(serve)
    serve.add_argument("--no-supervisor", action="store_true",
                       help="do not restore models whose worker processes died (MMS 1.1.11 never starts a dead "
                            "listener again); docs/availability.md")
    supervisor.add_options(serve)
    serve.add_argument("--server", default="mms", choices=["mms", "torchserve"],
                       help="mms (default): multi-model-server 1.1.11; torchserve: TorchServe 0.12 from "
                            "$MMSCTL_TORCHSERVE, with its own metrics API in place of the exporter "
                            "(docs/torchserve.md)")
    serve.add_argument("--torchserve-metrics-port", type=int, default=8082,
                       help="TorchServe's own metrics API port, on 127.0.0.1 (default 8082; --server torchserve)")
    serve.set_defaults(func=cmd_serve)

    stop = command(sub, "stop", "stop the server `mmsctl serve` started",
                   "mmsctl stop")
    stop.add_argument("--state-dir", default=server.default_state_dir())
    stop.set_defaults(func=cmd_stop)
