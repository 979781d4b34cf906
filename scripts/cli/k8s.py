"""``mmsctl k8s render``: a kustomize folder for one mmsctl server on Kubernetes."""
from mmsctl.config.profiles import OPENMP_RUNTIMES
from mmsctl.docker import k8s

from .. import autoscaling, models_file
from .common import command, model_pair

EXAMPLE = ("mmsctl k8s render --image registry.example.com/mmsctl-models:1 --profile cpu-latency --vcpus 2 \\\n"
           "    --models efficientnet-lite0=efficientnet-lite0.mar --bench-report bench-out/report.json \\\n"
           "    --latency-p99-ms 250 --output-dir deploy/k8s\n"
           "kubectl apply -k deploy/k8s")


def options_from(args):
    """K8sOptions from the arguments: the models file, and the bench report's sizing and load time, read here."""
    k8s.check_profile(args.profile)
    file_models = tuple(models_file.load(args.models_file)) if args.models_file else ()
    models_file.combine((args.models_file or "--models-file", file_models),
                        ("--models", models_file.from_pairs(args.models or ())))
    size, load, source = None, args.load_seconds, "--load-seconds"
    if args.bench_report:
        report = autoscaling.load_report(args.bench_report)
        size = autoscaling.sizing(report, args.profile, args.vcpus, latency_p99_ms=args.latency_p99_ms,
                                  headroom=autoscaling.DEFAULT_HEADROOM if args.headroom is None else args.headroom,
                                  batch_size=args.batch_size, model=args.model,
                                  path=args.bench_report)
        if load is None:
            load = k8s.load_seconds_from_report(report, args.profile)
            source = "the bench report's cold start (serve to first answer)"
    elif args.latency_p99_ms is not None or args.headroom is not None:
        raise autoscaling.AutoscalingError("--latency-p99-ms and --headroom size the autoscaling from "
                                           "--bench-report DIR/report.json: pass the report")
    if load is None:
        load, source = k8s.DEFAULT_LOAD_SECONDS, "default: the ECS health check's start period"
    return k8s.K8sOptions(
        image=args.image, profile=args.profile, vcpus=args.vcpus, models=tuple(args.models or ()),
        file_models=file_models, name=args.name, namespace=args.namespace, memory=args.memory, gpus=args.gpus,
        openmp=args.openmp, drain_timeout=args.drain_timeout, load_seconds=load, load_source=source,
        min_replicas=args.min_replicas, max_replicas=args.max_replicas, size=size,
        archives_claim=args.archives_claim, service_monitor=args.service_monitor)


def cmd_render(args):
    options = options_from(args)
    written = k8s.write(options, args.output_dir)
    print("wrote %s: %s" % (args.output_dir, ", ".join(written)))
    if options.size is not None:
        print(autoscaling.explain(options.size))
    print("apply: kubectl apply -k %s" % args.output_dir)
    return 0


def add_commands(sub):
    """``mmsctl k8s render``: write a kustomize folder (Deployment, Service, HPA, PDB, NetworkPolicy, ...)."""
    group = command(sub, "k8s", "write Kubernetes manifests (a kustomize folder) for an mmsctl image", EXAMPLE)
    actions = group.add_subparsers(dest="k8s_action", metavar="ACTION", required=True)
    render = command(actions, "render",
                     "a kustomize folder: Deployment, Service, HPA, PodDisruptionBudget, NetworkPolicy, "
                     "models.toml ConfigMap", EXAMPLE)
    render.add_argument("--image", required=True,
                        help="an image built FROM docker/Dockerfile.cpu|gpu with the archives in /models "
                             "(or see --archives-claim)")
    render.add_argument("--profile", required=True, help="cpu-latency, cpu-throughput or gpu")
    render.add_argument("--vcpus", type=int, required=True,
                        help="the pod's CPUs (requests = limits), what the profile plans workers and threads for")
    render.add_argument("--memory", type=int, default=k8s.DEFAULT_MEMORY_MIB,
                        help="the pod's memory in MiB (requests = limits; default %(default)s)")
    render.add_argument("--gpus", type=int, default=1, help="profile gpu: nvidia.com/gpu of the pod (default 1)")
    render.add_argument("--openmp", default="gnu", choices=OPENMP_RUNTIMES,
                        help="OpenMP runtime of the image's MXNet (default gnu: the pip wheels)")
    render.add_argument("--models", nargs="+", type=model_pair, metavar="NAME=FILE.mar",
                        help="archives in the image's /models to serve")
    render.add_argument("--models-file", metavar="FILE.toml",
                        help="a models file (checked here), served from the rendered ConfigMap")
    render.add_argument("--name", help="name of every object (default mmsctl-PROFILE)")
    render.add_argument("--namespace", help="namespace of every object (default: kubectl's)")
    render.add_argument("--archives-claim", metavar="PVC",
                        help="mount this PersistentVolumeClaim read-only at /models (default: the archives are "
                             "in the image)")
    render.add_argument("--bench-report", metavar="DIR/report.json",
                        help="`mmsctl bench` report of this profile on these vCPUs: sizes the HPA's "
                             "requests-per-second target as `mmsctl ecs autoscaling` does, and the startupProbe")
    render.add_argument("--latency-p99-ms", type=float,
                        help="only levels whose p99 is at most this count (default: all)")
    render.add_argument("--headroom", type=float,
                        help="fraction of the measured throughput to aim for (default %s)"
                             % autoscaling.DEFAULT_HEADROOM)
    render.add_argument("--batch-size", type=int, help="the server's batch size, when the report has several")
    render.add_argument("--model", help="refuse a report of another model")
    render.add_argument("--load-seconds", type=float,
                        help="the models' load time (default: the report's cold start, else %d); the startupProbe "
                             "allows %d x it, at least %d s" % (k8s.DEFAULT_LOAD_SECONDS, k8s.STARTUP_FACTOR,
                                                                k8s.MIN_STARTUP_SECONDS))
    render.add_argument("--min-replicas", type=int, default=k8s.DEFAULT_MIN_REPLICAS)
    render.add_argument("--max-replicas", type=int, default=k8s.DEFAULT_MAX_REPLICAS)
    render.add_argument("--drain-timeout", type=int, default=k8s.DRAIN_TIMEOUT,
                        help="seconds requests in flight get after SIGTERM (default %d; "
                             "terminationGracePeriodSeconds = this + %d)" % (k8s.DRAIN_TIMEOUT, k8s.STOP_MARGIN))
    render.add_argument("--service-monitor", action="store_true",
                        help="add a ServiceMonitor (Prometheus Operator) for port 8082")
    render.add_argument("--output-dir", required=True, metavar="DIR", help="the kustomize folder to write")
    render.set_defaults(func=cmd_render)
