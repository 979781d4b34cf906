"""RegisterTaskDefinition requests for the mmsctl images (CPU, GPU, EI), as plain dicts.

See the package's docstring for what every generated task guarantees.
"""
import re
from dataclasses import dataclass
from typing import Optional, Tuple

from mmsctl.config import profiles
from mmsctl.drain import DEFAULT_DRAIN_TIMEOUT
from mmsctl.errors import UsageError

INFERENCE_PORT = 8080
MANAGEMENT_PORT = 8081
#: container ports of the plain CPU server that --side-by-side adds (awsvpc tasks
#: share one network namespace, so the two servers need distinct ports)
SIDE_PORT_OFFSET = 10
CONTAINER_MODEL_STORE = "/models"
MODELS_VOLUME = "models"
NETWORK_MODES = ("bridge", "awsvpc")
#: the accelerator types ECS documents for task definitions
EI_ACCELERATORS = ("eia2.medium", "eia2.large", "eia2.xlarge")
EI_DEVICE_NAME = "device_1"
#: where the EI is attached: to the task (ECS-native, the task role connects) or to
#: the container instance by its launch template (seeds 000 and 004: the server
#: must not see the ECS metadata variables, and the instance role connects)
EI_ATTACHMENTS = ("task", "instance")
DEFAULT_MEMORY_MIB = 2048
CPU_UNITS_PER_VCPU = 1024
#: the server loads every model before it is healthy: MXNet import + model load
HEALTH_CHECK = {"interval": 30, "timeout": 10, "retries": 3, "startPeriod": 120}
#: after SIGTERM the server drains (requests in flight finish) for at most --drain-timeout
#: seconds, then stops MMS (measured here: gone in 0.4 s); ECS waits stopTimeout =
#: drain + margin before SIGKILL, at most 120 s
DRAIN_TIMEOUT = int(DEFAULT_DRAIN_TIMEOUT)
STOP_MARGIN = 10
MAX_STOP_TIMEOUT = 120
STOP_TIMEOUT = DRAIN_TIMEOUT + STOP_MARGIN
NEURON_SOCKET_VOLUME = "neuron-sock"
NEURON_SOCKET_DIR = "/sock"
NEURON_RTD_MEMORY_MIB = 256
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,254}$")
_MODEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class EcsError(UsageError):
    """Options that do not make a valid ECS request; the message says which and why."""


@dataclass(frozen=True)
class TaskOptions:
    """What ``mmsctl ecs task-definition`` asks for.

    ``cpu`` is in ECS CPU units (1024 = one vCPU); ``vcpus`` (default cpu/1024)
    is what the profile plans threads for; ``openmp`` is the OpenMP runtime of
    the image's MXNet ("gnu" for the pip wheels; the writer's own MXNet is not
    asked). ``models`` are (name, file.mar) pairs in the model store: the
    image's /models, or ``host_model_store`` on the container instance, mounted
    read-only. ``models_file``: a models file's name in that store, ``file_models``
    its ModelSpecs (read by the caller): planned here, read by the server there.
    """

    profile: str
    image: str
    models: Tuple[Tuple[str, str], ...]
    family: Optional[str] = None
    accelerator: Optional[str] = None
    ei_attachment: str = "task"
    network_mode: str = "bridge"
    side_by_side: bool = False
    cpu: Optional[int] = None
    memory: int = DEFAULT_MEMORY_MIB
    vcpus: Optional[int] = None
    gpus: int = 1
    openmp: str = "gnu"
    host_port: int = INFERENCE_PORT
    execution_role_arn: Optional[str] = None
    task_role_arn: Optional[str] = None
    host_model_store: Optional[str] = None
    log_group: Optional[str] = None
    region: Optional[str] = None
    metrics_port: Optional[int] = None
    drain_timeout: int = DRAIN_TIMEOUT
    emf: bool = False
    models_file: Optional[str] = None
    file_models: Tuple = ()


def all_model_names(options):
    """The file's models first, then --models: the order `mmsctl serve` plans them in."""
    return [spec.name for spec in options.file_models] + [name for name, _ in options.models]


def default_family(options):
    return "mmsctl-%s%s" % (options.profile, "-side-by-side" if options.side_by_side else "")


def planned_vcpus(options, containers=1):
    """vCPUs each server plans threads for: --vcpus, else its share of --cpu."""
    if options.vcpus is not None:
        return options.vcpus
    if options.cpu is not None:
        return max(1, options.cpu // CPU_UNITS_PER_VCPU // containers)
    raise EcsError("pass --vcpus N (the vCPUs each server may use) or --cpu UNITS (1024 per vCPU): the profile "
                   "plans its workers and OpenMP threads for them, and a task definition must not guess from "
                   "the machine that writes it")


def validate(options):
    """Raise :class:`EcsError` for options ECS or the profile would refuse."""
    if options.profile not in profiles.PROFILES:
        raise EcsError("unknown profile %r: choose one of %s" % (options.profile, ", ".join(profiles.PROFILES)))
    if not options.image:
        raise EcsError("--image is required: the image to run (e.g. ACCOUNT.dkr.ecr.REGION.amazonaws.com/mmsctl:cpu)")
    if not options.models and not options.file_models:
        raise EcsError("--models NAME=FILE.mar or --models-file FILE.toml is required: the server's health check "
                       "needs a model to check")
    names = all_model_names(options)
    if len(set(names)) != len(names):
        raise EcsError("a model name is given twice (--models and the models file): %s" % ", ".join(names))
    for name, path in tuple(options.models) + tuple((spec.name, spec.archive) for spec in options.file_models):
        if not _MODEL.match(name):
            raise EcsError("model name %r: MMS accepts letters, digits, '_', '.' and '-' only" % name)
        if "/" in path or not path.endswith(".mar"):
            raise EcsError("model %s: %r must be a .mar file name in the model store (%s), not a path or URL"
                           % (name, path, CONTAINER_MODEL_STORE))
    family = options.family or default_family(options)
    if not NAME_PATTERN.match(family):
        raise EcsError("family %r: up to 255 letters, digits, '_' and '-'" % family)
    if options.network_mode not in NETWORK_MODES:
        raise EcsError("--network-mode must be one of %s" % ", ".join(NETWORK_MODES))
    if options.profile == "ei" and options.accelerator is None and options.ei_attachment == "task":
        raise EcsError("profile ei needs --accelerator (one of %s), or --ei-attachment instance for an EI "
                       "attached to the container instance" % ", ".join(EI_ACCELERATORS))
    if options.accelerator is not None:
        if options.profile != "ei":
            raise EcsError("--accelerator %s needs --profile ei (the EI build of MXNet, one worker)"
                           % options.accelerator)
        if options.accelerator not in EI_ACCELERATORS:
            raise EcsError("--accelerator %r: ECS task definitions take %s"
                           % (options.accelerator, ", ".join(EI_ACCELERATORS)))
        if options.ei_attachment != "task":
            raise EcsError("--accelerator attaches an EI to the task; with --ei-attachment instance the launch "
                           "template attaches it: pass one or the other")
    if options.ei_attachment not in EI_ATTACHMENTS:
        raise EcsError("--ei-attachment must be one of %s" % ", ".join(EI_ATTACHMENTS))
    if options.side_by_side and options.profile.startswith("cpu"):
        raise EcsError("--side-by-side puts a plain CPU server next to an accelerated one (profile ei or gpu); "
                       "profile %s is already the CPU server" % options.profile)
    if options.memory < 128:
        raise EcsError("--memory %d MiB: ECS needs at least 128 (MXNet and Java need about 1024)" % options.memory)
    if options.cpu is not None and options.cpu < 128:
        raise EcsError("--cpu %d: ECS needs at least 128 CPU units (1024 = one vCPU)" % options.cpu)
    if options.network_mode == "awsvpc" and options.host_port not in (INFERENCE_PORT, 0):
        raise EcsError("awsvpc tasks have their own address: the host port is the container port (%d); "
                       "drop --host-port" % INFERENCE_PORT)
    if not 0 <= options.host_port <= 65535:
        raise EcsError("--host-port %d is not a port" % options.host_port)
    if options.gpus < 1:
        raise EcsError("--gpus must be at least 1")
    if not 0 <= options.drain_timeout <= MAX_STOP_TIMEOUT - STOP_MARGIN:
        raise EcsError("--drain-timeout %d: 0 to %d seconds (ECS stops a container at most %d s after SIGTERM, and "
                       "stopping MMS takes up to %d more)" % (options.drain_timeout, MAX_STOP_TIMEOUT - STOP_MARGIN,
                                                             MAX_STOP_TIMEOUT, STOP_MARGIN))
    if options.metrics_port in (INFERENCE_PORT, MANAGEMENT_PORT):
        raise EcsError("--metrics-port %d is the inference or management port" % options.metrics_port)
    if options.emf and not options.log_group:
        raise EcsError("--emf needs --log-group: CloudWatch turns the EMF lines into metrics from the awslogs "
                       "driver's log streams")
    if options.openmp not in profiles.OPENMP_RUNTIMES:
        raise EcsError("--openmp must be one of %s" % ", ".join(profiles.OPENMP_RUNTIMES))
    return options


def task_profile(options, name, vcpus):
    """The profile the server in the container computes, planned over all its models (one core budget)."""
    profile = profiles.build_profile(name, vcpus=vcpus, gpus=options.gpus if name == "gpu" else 0,
                                     model_store=CONTAINER_MODEL_STORE, inference_host="0.0.0.0",
                                     openmp=options.openmp,
                                     unset_ecs_metadata=name == "ei" and options.ei_attachment == "instance")
    requests = [spec.request() for spec in options.file_models]
    requests += [profiles.ModelRequest(model) for model, _ in options.models]
    return profiles.plan_models(profile, requests)[0]


def serve_command(profile, models, inference_port, management_port, metrics_port=None,
                  drain_timeout=DRAIN_TIMEOUT, models_file=None, emf=False):
    """The arguments of ``mmsctl serve --foreground --public`` for one container.

    The ECS entry point is ``mmsctl serve`` itself (ECS's init process is PID 1
    instead of the image's tini); ``--unset-ecs-metadata`` follows
    ``profile.unset_environment``: ECS cannot unset a variable, the server can.
    """
    words = ["mmsctl", "serve", "--foreground", "--public", "--model-store", CONTAINER_MODEL_STORE,
             "--profile", profile.name, "--vcpus", str(profile.vcpus), "--openmp", profile.openmp,
             "--inference-port", str(inference_port), "--management-port", str(management_port),
             "--drain-timeout", str(drain_timeout)]
    if metrics_port is not None:  # /healthz and /readyz, the load balancer's health check
        words += ["--metrics-port", str(metrics_port)]
    if emf:  # CloudWatch Embedded Metric Format lines on stdout, for the awslogs driver
        words.append("--emf")
    if profile.name == "gpu":
        words += ["--gpus", str(profile.gpus)]
    if profile.unset_environment:
        words.append("--unset-ecs-metadata")
    if models_file:  # a name in the model store, or an absolute path (Kubernetes: a ConfigMap's mount)
        words += ["--models-file", models_file if models_file.startswith("/")
                  else "%s/%s" % (CONTAINER_MODEL_STORE, models_file)]
    if models:
        words.append("--models")
        words += ["%s=%s" % (name, path) for name, path in models]
    return words


def health_check(names, management_port):
    """ECS health check: each model has a live worker process that has loaded it (``mmsctl health``: the rule of
    the exporter's /readyz; MMS's /ping and READY stay on when every worker process is dead)."""
    command = ["CMD", "mmsctl", "health", "--management-url", "http://127.0.0.1:%d" % management_port]
    return dict(HEALTH_CHECK, command=command + list(names))


def _port_mapping(options, container_port, host_port):
    mapping = {"containerPort": container_port, "protocol": "tcp"}
    if options.network_mode == "bridge":
        mapping["hostPort"] = host_port
    return mapping


def server_container(options, profile, name, inference_port, host_port, cpu=None, memory_reservation=None):
    """One ``mmsctl serve`` container definition; ``cpu`` (units) and
    ``memory_reservation`` (MiB, a soft limit) are its share of the task."""
    management_port = inference_port + (MANAGEMENT_PORT - INFERENCE_PORT)
    metrics_port = None if options.metrics_port is None else options.metrics_port + inference_port - INFERENCE_PORT
    command = serve_command(profile, options.models, inference_port, management_port, metrics_port,
                            options.drain_timeout, options.models_file, emf=options.emf)
    container = {
        "name": name,
        "image": options.image,
        "essential": True,
        "entryPoint": command[:2],
        "command": command[2:],
        "environment": [{"name": key, "value": value} for key, value in sorted(profile.environment.items())],
        "portMappings": [_port_mapping(options, inference_port, host_port)] + (
            [] if metrics_port is None else [_port_mapping(options, metrics_port, 0)]),
        "healthCheck": health_check(all_model_names(options), management_port),
        "linuxParameters": {"initProcessEnabled": True},
        "user": "10001:10001",
        "stopTimeout": options.drain_timeout + STOP_MARGIN,
        "ulimits": [{"name": "nofile", "softLimit": 65536, "hardLimit": 65536}],
        "dockerLabels": {"mmsctl.profile": profile.name},
    }
    if cpu is not None:
        container["cpu"] = cpu
    if memory_reservation is not None:
        container["memoryReservation"] = memory_reservation
    if options.host_model_store:
        container["mountPoints"] = [{"sourceVolume": MODELS_VOLUME, "containerPath": CONTAINER_MODEL_STORE,
                                     "readOnly": True}]
    if options.log_group:
        container["logConfiguration"] = {"logDriver": "awslogs", "options": {
            "awslogs-group": options.log_group, "awslogs-region": options.region or "us-east-1",
            "awslogs-stream-prefix": name}}
    if profile.name == "ei" and options.accelerator:
        container["resourceRequirements"] = [{"type": "InferenceAccelerator", "value": EI_DEVICE_NAME}]
    if profile.name == "gpu":
        container["resourceRequirements"] = [{"type": "GPU", "value": str(profile.gpus)}]
    return container


def task_definition(options):
    """The RegisterTaskDefinition request for ``options`` (see :class:`TaskOptions`)."""
    validate(options)
    count = 2 if options.side_by_side else 1
    vcpus = planned_vcpus(options, count)
    container_cpu = options.cpu // count if options.cpu is not None else None
    share = options.memory // count
    main = server_container(options, task_profile(options, options.profile, vcpus), "mmsctl-%s" % options.profile,
                            INFERENCE_PORT, options.host_port, container_cpu, share)
    containers = [main]
    if options.side_by_side:
        side_port = INFERENCE_PORT + SIDE_PORT_OFFSET
        side_host = options.host_port + SIDE_PORT_OFFSET if options.host_port else 0
        # seed 000's comparison: the same model on the CPU, one request at a time on every vCPU
        containers.append(server_container(options, task_profile(options, "cpu-latency", vcpus), "mmsctl-cpu",
                                           side_port, side_host, container_cpu, share))
    request = {
        "family": options.family or default_family(options),
        "networkMode": options.network_mode,
        "requiresCompatibilities": ["EC2"],
        "containerDefinitions": containers,
        "memory": str(options.memory),
    }
    if options.cpu is not None:
        request["cpu"] = str(options.cpu)
    if options.execution_role_arn:
        request["executionRoleArn"] = options.execution_role_arn
    if options.task_role_arn:
        request["taskRoleArn"] = options.task_role_arn
    if options.accelerator:
        request["inferenceAccelerators"] = [{"deviceName": EI_DEVICE_NAME, "deviceType": options.accelerator}]
    if options.host_model_store:
        request["volumes"] = [{"name": MODELS_VOLUME, "host": {"sourcePath": options.host_model_store}}]
    return request
