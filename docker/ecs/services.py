"""CreateService requests for a registered task definition, and reading one back from its file."""
import json

from .taskdef import HEALTH_CHECK, NAME_PATTERN, EcsError


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
    if not NAME_PATTERN.match(name):
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
