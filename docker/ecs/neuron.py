"""RegisterTaskDefinition requests for Inf1 (Neuron) instances: the server with /dev/neuron* mapped in."""
from dataclasses import dataclass
from typing import Optional, Tuple

from .taskdef import (DEFAULT_MEMORY_MIB, INFERENCE_PORT, NEURON_RTD_MEMORY_MIB, NEURON_SOCKET_DIR,
                      NEURON_SOCKET_VOLUME, EcsError, TaskOptions, server_container, task_profile, validate)


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
    profile = task_profile(base, "cpu-throughput", options.vcpus)
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
