"""Amazon ECS requests for the mmsctl images, as plain dicts.

Every function here but :func:`load_task_definition` is pure: it returns the
body of one ECS API request (``RegisterTaskDefinition``, ``CreateService``) or an
IAM policy document, ready for ``aws ecs register-task-definition
--cli-input-json file://...``. Nothing talks to AWS; tests/test_ecs.py checks
the output against botocore's ECS model and runs it through moto.

What the generated tasks guarantee:

* the container runs ``mmsctl serve --foreground --public`` as a non-root user
  under ECS's init process (``linuxParameters.initProcessEnabled``), so a
  SIGTERM from ``docker stop`` reaches the server's whole process tree;
* only the inference port is mapped; the management API stays on the
  container's 127.0.0.1, where the health check (``mmsctl health``) reads it;
* the profile's thread settings (``build_profile(...).environment``) are in the
  container's environment and on its command line, so the server inside plans
  for the same vCPUs as the task.

Elastic Inference (EI) is retired by AWS (no new customers since April 2023,
removed from EC2/ECS since): the ``ei`` requests are kept for accounts that
still have it and for seed 000's CPU-versus-EI comparison; Inf1 (Neuron) is the
forward path for accelerated MXNet on ECS (:func:`neuron_task_definition`).
"""
import json
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
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,254}$")
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
    if not _NAME.match(family):
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


def _profile(options, name, vcpus):
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
    if models_file:
        words += ["--models-file", "%s/%s" % (CONTAINER_MODEL_STORE, models_file)]
    if models:
        words.append("--models")
        words += ["%s=%s" % (name, path) for name, path in models]
    return words


def health_check(names, management_port):
    """ECS health check: READY workers for every model (MMS's /ping stays 200 when all are dead)."""
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
    main = server_container(options, _profile(options, options.profile, vcpus), "mmsctl-%s" % options.profile,
                            INFERENCE_PORT, options.host_port, container_cpu, share)
    containers = [main]
    if options.side_by_side:
        side_port = INFERENCE_PORT + SIDE_PORT_OFFSET
        side_host = options.host_port + SIDE_PORT_OFFSET if options.host_port else 0
        # seed 000's comparison: the same model on the CPU, one request at a time on every vCPU
        containers.append(server_container(options, _profile(options, "cpu-latency", vcpus), "mmsctl-cpu",
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


@dataclass(frozen=True)
class NeuronOptions:
    """An Inf1 task (seed 001): the server with /dev/neuron* mapped in, and with
    ``neuron_rtd_image`` the Neuron 1.x layout, where a ``neuron-rtd`` sidecar
    owns the devices and the server reaches it through a socket volume."""

    image: str
    models: Tuple[Tuple[str, str], ...]
    vcpus: int
    devices: int = 1
    neuron_rtd_image: Optional[str] = None
    family: str = "mmsctl-inf1"
    memory: int = DEFAULT_MEMORY_MIB
    host_port: int = INFERENCE_PORT
    execution_role_arn: Optional[str] = None
    task_role_arn: Optional[str] = None
    socket_host_path: str = "/tmp/neuron-sock"


def neuron_devices(count):
    """``linuxParameters.devices`` for the first ``count`` Inferentia chips of an Inf1 instance."""
    return [{"hostPath": "/dev/neuron%d" % i, "containerPath": "/dev/neuron%d" % i,
             "permissions": ["read", "write"]} for i in range(count)]


def neuron_task_definition(options):
    """RegisterTaskDefinition for Inf1. Inf1 runs on the EC2 launch type only, and
    ECS's ``NeuronDevice`` resource requirement (in botocore's model since 2025)
    is for ECS Managed Instances only, so the chips are mapped as devices.

    The image must carry an MXNet built for Neuron and archives compiled for
    Inferentia: mmsctl serves them as CPU-profile workers, one per NeuronCore
    group. Not run here: there is no Inferentia chip on these machines.
    """
    if not options.models:
        raise EcsError("--models NAME=FILE.mar is required")
    if not 1 <= options.devices <= 16:
        raise EcsError("--neuron-devices %d: an Inf1 instance has 1 to 16 Inferentia chips" % options.devices)
    base = TaskOptions(profile="cpu-throughput", image=options.image, models=options.models, vcpus=options.vcpus,
                       memory=options.memory, host_port=options.host_port, family=options.family)
    validate(base)
    profile = _profile(base, "cpu-throughput", options.vcpus)
    sidecar = NEURON_RTD_MEMORY_MIB if options.neuron_rtd_image else 0
    server = server_container(base, profile, "mmsctl-inf1", INFERENCE_PORT, options.host_port,
                              memory_reservation=options.memory - sidecar)
    server["dockerLabels"] = {"mmsctl.profile": "inf1"}
    request = {
        "family": options.family,
        "networkMode": "bridge",
        "requiresCompatibilities": ["EC2"],
        "placementConstraints": [{"type": "memberOf",
                                  "expression": "attribute:ecs.instance-type =~ inf1.*"}],
        "containerDefinitions": [server],
        "memory": str(options.memory),
    }
    if options.neuron_rtd_image is None:
        # Neuron 2.x: the runtime is a library inside the server's image.
        server["linuxParameters"]["devices"] = neuron_devices(options.devices)
    else:
        socket = "unix:%s/neuron-rtd.sock" % NEURON_SOCKET_DIR
        mount = {"sourceVolume": NEURON_SOCKET_VOLUME, "containerPath": NEURON_SOCKET_DIR}
        server["environment"].append({"name": "NEURON_RTD_ADDRESS", "value": socket})
        server["mountPoints"] = [mount]
        server["dependsOn"] = [{"containerName": "neuron-rtd", "condition": "START"}]
        request["containerDefinitions"].append({
            "name": "neuron-rtd",
            "image": options.neuron_rtd_image,
            "essential": True,
            "command": ["neuron-rtd", "-g", socket],
            "environment": [{"name": "AWS_NEURON_VISIBLE_DEVICES", "value": "ALL"}],
            "mountPoints": [mount],
            "memoryReservation": NEURON_RTD_MEMORY_MIB,
            "linuxParameters": {"capabilities": {"add": ["SYS_ADMIN", "IPC_LOCK"]},
                                "devices": neuron_devices(options.devices), "initProcessEnabled": True},
        })
        request["volumes"] = [{"name": NEURON_SOCKET_VOLUME, "host": {"sourcePath": options.socket_host_path}}]
    if options.execution_role_arn:
        request["executionRoleArn"] = options.execution_role_arn
    if options.task_role_arn:
        request["taskRoleArn"] = options.task_role_arn
    return request


def _static_host_ports(task):
    return task.get("networkMode", "bridge") == "bridge" and any(
        mapping.get("hostPort") for container in task["containerDefinitions"]
        for mapping in container.get("portMappings", ()))


def deployment_configuration(task, desired_count):
    """Rolling-update limits that can succeed for this task.

    A bridge task with fixed host ports cannot start a second copy on an instance
    that already runs one, so the update stops old copies first (maximum 100%)
    and keeps at least half up while more than one runs; with dynamic host ports
    or awsvpc a new copy starts before the old one stops (200%). The circuit
    breaker rolls back a deployment whose tasks never pass their health check.
    """
    if _static_host_ports(task):
        minimum, maximum = (50 if desired_count > 1 else 0), 100
    else:
        minimum, maximum = 100, 200
    return {"minimumHealthyPercent": minimum, "maximumPercent": maximum,
            "deploymentCircuitBreaker": {"enable": True, "rollback": True}}


def service(task, cluster, name, desired_count=1, revision=None, subnets=(), security_groups=(),
            target_group_arn=None, assign_public_ip=False):
    """The CreateService request that keeps ``desired_count`` copies of ``task`` running."""
    if desired_count < 0:
        raise EcsError("--desired-count cannot be negative")
    if not _NAME.match(name):
        raise EcsError("service name %r: up to 255 letters, digits, '_' and '-'" % name)
    if not cluster:
        raise EcsError("--cluster is required")
    awsvpc = task.get("networkMode") == "awsvpc"
    if awsvpc and not subnets:
        raise EcsError("task %s uses awsvpc: pass --subnets (and --security-groups) for its network interfaces"
                       % task["family"])
    if subnets and not awsvpc:
        raise EcsError("--subnets and --security-groups apply to awsvpc tasks; task %s uses %s networking"
                       % (task["family"], task.get("networkMode", "bridge")))
    request = {
        "cluster": cluster,
        "serviceName": name,
        "taskDefinition": task["family"] + (":%d" % revision if revision else ""),
        "desiredCount": desired_count,
        "launchType": "EC2",
        "schedulingStrategy": "REPLICA",
        "deploymentConfiguration": deployment_configuration(task, desired_count),
        "deploymentController": {"type": "ECS"},
        # spread copies over zones, then pack instances by memory (MXNet models are memory-bound)
        "placementStrategy": [{"type": "spread", "field": "attribute:ecs.availability-zone"},
                              {"type": "binpack", "field": "memory"}],
        "propagateTags": "TASK_DEFINITION",
        "enableECSManagedTags": True,
    }
    if awsvpc:
        network = {"subnets": list(subnets), "assignPublicIp": "ENABLED" if assign_public_ip else "DISABLED"}
        if security_groups:
            network["securityGroups"] = list(security_groups)
        request["networkConfiguration"] = {"awsvpcConfiguration": network}
    if target_group_arn:
        container = task["containerDefinitions"][0]
        request["loadBalancers"] = [{"targetGroupArn": target_group_arn, "containerName": container["name"],
                                     "containerPort": container["portMappings"][0]["containerPort"]}]
        # the health check's startPeriod: models load before the first READY worker
        request["healthCheckGracePeriodSeconds"] = HEALTH_CHECK["startPeriod"]
    return request


def trust_policy(service_principal):
    """An IAM role trust policy for ``ecs-tasks.amazonaws.com`` (task and execution
    roles) or ``ec2.amazonaws.com`` (the container instances' role)."""
    return {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"Service": service_principal}, "Action": "sts:AssumeRole"}]}


def ei_connect_policy():
    """The permission an EI client needs (seed 000: only elastic-inference:Connect is required).

    Attach it to the task role for task-attached accelerators, to the instance
    role for accelerators attached by the launch template (seed 004).
    """
    return {"Version": "2012-10-17", "Statement": [{
        "Sid": "ElasticInferenceConnect", "Effect": "Allow", "Action": ["elastic-inference:Connect"],
        "Resource": "*"}]}


IAM_DOCUMENTS = {
    "ei-connect": ei_connect_policy,
    "task-trust": lambda: trust_policy("ecs-tasks.amazonaws.com"),
    "instance-trust": lambda: trust_policy("ec2.amazonaws.com"),
}


def iam_document(kind):
    try:
        return IAM_DOCUMENTS[kind]()
    except KeyError:
        raise EcsError("unknown IAM document %r: choose one of %s" % (kind, ", ".join(IAM_DOCUMENTS)))


def load_task_definition(path):
    """A RegisterTaskDefinition request written by ``mmsctl ecs task-definition``."""
    try:
        with open(path, encoding="utf-8") as handle:
            task = json.load(handle)
    except OSError as err:
        raise EcsError("cannot read task definition %s: %s" % (path, err.strerror))
    except ValueError as err:
        raise EcsError("task definition %s is not JSON (%s): write it with `mmsctl ecs task-definition ... > %s`"
                       % (path, err, path))
    if not isinstance(task, dict) or "family" not in task or not task.get("containerDefinitions"):
        raise EcsError("%s is not a RegisterTaskDefinition request (no family or containerDefinitions)" % path)
    return task
